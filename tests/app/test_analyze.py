"""AppTest of the Analyze page: real uploads through st.file_uploader, the tiny model, real Grad-CAM."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import assert_clean, assert_notice, plotly_array, plotly_specs, rendered_text
from PIL import Image
from streamlit.testing.v1 import AppTest

from medimg import viz
from medimg.ui.analysis import STATE_KEY
from medimg.ui.errors import GENERIC_MESSAGE

PAGE = "pages/analyze.py"
CANARY_NAME = "CANARY^PATIENT_Doe_123456.dcm"


def _upload(at: AppTest, name: str, data: bytes, mime: str = "application/octet-stream") -> AppTest:
    at.file_uploader(key="medimg.upload").upload(name, data, mime)
    return at.run()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _assert_result(at: AppTest, labels: tuple[str, ...] = ("normal", "pneumonia")) -> None:
    md = [m.value for m in at.markdown]
    assert any(m.startswith("**Model output: ") for m in md), md
    figs = plotly_specs(at)
    bars = figs["probabilities"]["data"][0]
    assert list(plotly_array(bars["y"])) == list(labels)
    x = plotly_array(bars["x"])
    assert abs(x.sum() - 1.0) < 1e-6 and ((x >= 0) & (x <= 1)).all()
    # the device that ran it
    assert any("Ran on **CPU**" in c.value or "Ran on **GPU (CUDA)**" in c.value for c in at.caption)
    # Grad-CAM section: overlay figure with a colorbar that says the scale is relative
    assert "Grad-CAM: where the network looked" in [s.value for s in at.subheader]
    cam = figs["cam-figure"]
    assert any(t.get("type") == "image" for t in cam["data"])
    bars_titles = [t["marker"]["colorbar"]["title"]["text"] for t in cam["data"] if "marker" in t]
    assert viz.RELATIVE_SCALE_TITLE in bars_titles
    # what the network saw, and the timings
    steps = [m.value for m in at.markdown]
    for name in ("**window**", "**geometry**", "**normalise**"):
        assert name in steps
    timing_steps = list(at.dataframe[-1].value["Step"])
    assert timing_steps == ["decode", "preprocess", "predict", "applicability checks", "Grad-CAM", "overlay"]


def test_without_upload_prompts_and_shows_notice(make_app) -> None:
    at = make_app(PAGE).run()
    assert_clean(at)
    assert_notice(at)
    assert any("Upload an image" in i.value for i in at.info)
    picker = at.sidebar.selectbox(key="medimg.model_picker")
    assert set(picker.options) == {"Tiny test CNN", "Tiny model without report"}
    badges = [m.value for m in at.sidebar.markdown if "badge" in m.value]
    assert badges and ("Runs on CPU" in badges[0] or "Runs on GPU (CUDA)" in badges[0])


def test_kermany_jpeg(make_app, shared_data: Path) -> None:
    data = (shared_data / "kermany-cxr" / "test" / "PNEUMONIA").glob("*.jpeg")
    jpeg = next(iter(sorted(data))).read_bytes()
    at = make_app(PAGE).run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json")
    at.run()
    _upload(at, "scan.jpeg", jpeg, "image/jpeg")
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert_notice(at)
    assert any("Applicability checks passed" in s.value for s in at.success)
    _assert_result(at)
    # opacity slider changes the overlay only; Grad-CAM is reused from session state
    at.slider(key="cam-alpha").set_value(0.8).run()
    assert_clean(at)
    timings = at.dataframe[-1].value
    assert list(timings["This run"]) == ["reused"] * 5 + ["computed"]


def test_dicom_gate_and_analyse_anyway(make_app, shared_data: Path) -> None:
    """dx_image.dcm is a DX of Body Part THORAX; the tiny model was trained on CHEST: the gate fails."""
    dcm = (shared_data / "dicom" / "cxr" / "dx_image.dcm").read_bytes()
    at = _upload(make_app(PAGE).run(), CANARY_NAME, dcm)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    failed = [w.value for w in at.warning if w.value.startswith("**Check failed")]
    assert failed and "body part" in failed[0]
    # the result is held back until the user confirms
    assert "probabilities" not in plotly_specs(at)
    assert not any(m.value.startswith("**Model output") for m in at.markdown)
    anyway = next(c for c in at.checkbox if c.label.startswith("Analyse anyway"))
    anyway.check()
    at.run()
    assert_clean(at)
    _assert_result(at)
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("**Check failed") for w in warnings), "the warning stays beside the result"
    assert any("applicability checks failed" in w for w in warnings)
    # de-identified metadata, withheld receipt
    table = at.dataframe[0].value
    attrs = dict(zip(table["Attribute"], table["Value"], strict=True))
    assert attrs["Format"] == "DICOM" and attrs["Modality"] == "DX"
    assert any("**Withheld:**" in c.value for c in at.caption)
    # the file name never appears in what is rendered
    text = rendered_text(at)
    assert "CANARY" not in text and "Doe_123456" not in text
    # per-patient results live in this session's state only
    assert STATE_KEY in at.session_state
    other = make_app(PAGE).run()
    assert STATE_KEY not in other.session_state
    assert not any(m.value.startswith("**Model output") for m in other.markdown)


def test_colour_png_warns_channels(make_app, rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    at = _upload(make_app(PAGE).run(), "photo", _png(rgb))
    assert_clean(at)
    failed = [w.value for w in at.warning if w.value.startswith("**Check failed")]
    assert any("colour" in f for f in failed), failed


@pytest.mark.parametrize("case", ["pdf", "empty", "text", "truncated_dicom"])
def test_bad_files_show_clear_error(make_app, shared_data: Path, case: str) -> None:
    dcm = (shared_data / "dicom" / "cxr" / "dx_image.dcm").read_bytes()
    data, title = {
        "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 20, "Unsupported file type"),
        "empty": (b"", "Unsupported file type"),
        "text": (b"Patient: John Doe\nThis is not an image.\n" * 10, "Unsupported file type"),
        "truncated_dicom": (dcm[:1500], None),
    }[case]
    at = _upload(make_app(PAGE).run(), "scan.dcm", data)
    assert_clean(at)
    assert_notice(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "Something went wrong" not in errors[0], "a bad file is a known error, not an unexpected one"
    if title:
        assert errors[0].startswith(f"{title}: ")
    assert "John Doe" not in rendered_text(at)
    assert not any(s.value.startswith("Grad-CAM") for s in at.subheader)


def test_unexpected_error_is_generic_and_logs_type_only(make_app, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    import medimg

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("PatientName=CANARY^SECRET")

    at = make_app(PAGE).run()
    monkeypatch.setattr(medimg, "load_image", boom)
    with caplog.at_level(logging.ERROR, logger="medimg.ui"):
        _upload(at, "x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert_clean(at)
    assert [e.value for e in at.error] == [GENERIC_MESSAGE.format(stage="reading the file")]
    assert "CANARY" not in rendered_text(at)
    assert "RuntimeError" in caplog.text and "CANARY" not in caplog.text


def test_multiframe_slider_and_custom_window(make_app) -> None:
    frames = [Image.fromarray(np.full((64, 72), 40 * (i + 1), dtype=np.uint8)) for i in range(3)]
    for i, f in enumerate(frames):  # some structure so the content check passes
        f.paste(255, (8 * i, 8, 8 * i + 20, 40))
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    at = _upload(make_app(PAGE).run(), "stack.tif", buf.getvalue(), "image/tiff")
    assert_clean(at)
    slider = next(s for s in at.slider if s.label == "Frame")
    assert (slider.min, slider.max) == (1, 3)
    slider.set_value(3).run()
    assert_clean(at)
    attrs = dict(zip(at.dataframe[0].value["Attribute"], at.dataframe[0].value["Value"], strict=True))
    assert attrs["Frame"] == "3 of 3"
    preset = next(s for s in at.selectbox if s.label == "Window / level")
    preset.select_index(len(preset.options) - 1).run()
    center = next(s for s in at.slider if s.label.startswith("Center"))
    width = next(s for s in at.slider if s.label.startswith("Width"))
    center.set_value(200.0)
    width.set_value(50.0)
    at.run()
    assert_clean(at)
    captions = at.get("image")[0].captions
    assert captions[0].startswith("Displayed: custom, center 200, width 50"), captions


def test_no_model_shows_image_without_analysis(make_app, tmp_path: Path, shared_data: Path) -> None:
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = make_app(PAGE, tmp_path).run()
    assert_clean(at)
    assert any("No model weights found" in w.value for w in at.sidebar.warning)
    assert_notice(at)
    _upload(at, "a.jpeg", jpeg, "image/jpeg")
    assert_clean(at)
    assert any("No model is available" in i.value for i in at.info)
    assert at.get("image")[0].captions[0].startswith("Displayed: ")


def test_upload_is_never_written_to_disk(make_app, shared_data: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Analysing an upload through the page opens no file for writing (HOME, TMPDIR, cwd stay unchanged)."""
    import builtins
    import os
    import tempfile

    dcm = (shared_data / "dicom" / "cxr" / "dx_image.dcm").read_bytes()
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = _upload(make_app(PAGE).run(), "warm.jpeg", jpeg, "image/jpeg")  # warm up lazy imports and caches
    assert_clean(at)
    dirs = [tmp_path / d for d in ("home", "cwd", "tmp")]
    for d in dirs:
        d.mkdir()
    monkeypatch.setenv("HOME", str(dirs[0]))
    monkeypatch.chdir(dirs[1])
    monkeypatch.setenv("TMPDIR", str(dirs[2]))
    monkeypatch.setattr(tempfile, "tempdir", str(dirs[2]))
    writes: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(c in str(mode) for c in "wax+"):
            writes.append(f"open {mode}")
        return real_open(file, mode, *a, **k)

    def guarded_os_open(path, flags, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            writes.append("os.open for writing")
        return real_os_open(path, flags, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    try:
        at.file_uploader(key="medimg.upload").clear()
        _upload(at, CANARY_NAME, dcm)
        next(c for c in at.checkbox if c.label.startswith("Analyse anyway")).check()
        at.run()
    finally:
        monkeypatch.setattr(builtins, "open", real_open)
        monkeypatch.setattr(os, "open", real_os_open)
    assert_clean(at)
    assert any(m.value.startswith("**Model output") for m in at.markdown)
    assert not writes, writes
    for d in dirs:
        assert not any(d.rglob("*")), f"files appeared under {d.name}"
