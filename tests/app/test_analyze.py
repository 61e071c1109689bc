"""AppTest of the Analyze page: real uploads through st.file_uploader, the tiny model, real Grad-CAM."""

from __future__ import annotations

import base64
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


def _viewer(at: AppTest) -> dict:
    """The viewer panel's plotly figure (key ``viewer-<upload id>-figure``)."""
    figs = plotly_specs(at)
    keys = [k for k in figs if k.startswith("viewer-") and k.endswith("-figure")]
    assert len(keys) == 1, list(figs)
    return figs[keys[0]]


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
    # Grad-CAM section: the heat map beside the image in the viewer figure (linked axes), with a colorbar that
    # says the scale is relative
    assert "Grad-CAM: where the network looked" in [s.value for s in at.subheader]
    cam = _viewer(at)
    assert sum(t.get("type") == "image" for t in cam["data"]) == 2
    assert cam["layout"]["xaxis2"]["matches"] == "x" and cam["layout"]["yaxis2"]["matches"] == "y"
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
    assert list(timings["This run"]) == ["reused"] * 6


# ------------------------------------------------------------------------------ heat-map opacity (a fragment)


def _image_sources(at: AppTest) -> list[str]:
    """The viewer figure's image sources: [the image panel, the heat-map panel]."""
    return [t["source"] for t in _viewer(at)["data"] if t.get("type") == "image"]


def _count_work(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """From now on, count the network's forward passes and heat maps, the heat-map resampling and the page's
    decode step (the page script runs it first on every run)."""
    from medimg import explain
    from medimg.predict import Predictor
    from medimg.ui import analysis

    calls = {"predict": 0, "uncertainty": 0, "cam": 0, "overlay_base": 0, "page decode": 0}

    def counting(name: str, fn):  # noqa: ANN001, ANN202
        def wrapped(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(Predictor, "predict", counting("predict", Predictor.predict))
    monkeypatch.setattr(Predictor, "uncertainty", counting("uncertainty", Predictor.uncertainty))
    monkeypatch.setattr(explain, "cam", counting("cam", explain.cam))
    monkeypatch.setattr(analysis, "overlay_base", counting("overlay_base", analysis.overlay_base))
    monkeypatch.setattr(analysis, "decode", counting("page decode", analysis.decode))
    return calls


def _run_fragment(at: AppTest, monkeypatch: pytest.MonkeyPatch, key: str) -> AppTest:
    """Rerun only the fragment ``key``, as the Streamlit server does when a widget inside it changes.

    ``AppTest.run()`` always runs the whole script; here the run is queued with the fragment's id (the
    ``RerunData`` the browser's widget change leads to), so only the fragment's function runs and only its
    elements are in the result.
    """
    import functools

    from streamlit.runtime.scriptrunner import RerunData
    from streamlit.testing.v1 import local_script_runner

    ids = at._fragment_storage.resolve_target(key)
    assert ids, f"no fragment {key!r} was drawn"
    with monkeypatch.context() as m:
        m.setattr(local_script_runner, "RerunData",
                  functools.partial(RerunData, fragment_id_queue=list(ids), is_fragment_scoped_rerun=True))
        return at.run()


def test_opacity_slider_reruns_only_the_viewer(make_app, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving the opacity slider redraws the heat map at the new opacity without running the page again: no
    prediction, no heat map, no resampling, not even the decode step; the image panel is sent unchanged."""
    from medimg.ui.analysis import ALPHA_KEY, DEFAULT_ALPHA, VIEWER_FRAGMENT_KEY

    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "PNEUMONIA").glob("*.jpeg")))).read_bytes()
    at = _upload(make_app(PAGE).run(), "a.jpeg", jpeg, "image/jpeg")
    assert_clean(at)
    assert at.slider(key=ALPHA_KEY).value == DEFAULT_ALPHA
    image_src, heat_src = _image_sources(at)
    calls = _count_work(monkeypatch)
    at.slider(key=ALPHA_KEY).set_value(0.8)
    _run_fragment(at, monkeypatch, VIEWER_FRAGMENT_KEY)
    assert_clean(at)
    assert calls == dict.fromkeys(calls, 0), calls
    assert not _shows_result(at), "only the viewer panel was drawn again, not the page"
    assert "probabilities" not in plotly_specs(at)
    assert at.slider(key=ALPHA_KEY).value == 0.8
    new_image_src, new_heat_src = _image_sources(at)
    assert new_image_src == image_src
    assert new_heat_src != heat_src and new_heat_src.startswith("data:image/jpeg;base64,")
    assert _viewer(at)["layout"]["xaxis2"]["matches"] == "x", "the heat map still zooms with the image"


def test_opacity_on_a_full_rerun_reuses_every_result(make_app, shared_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A full run after moving the slider (e.g. another widget changed too) reuses the prediction, the heat map
    and its resampling; the heat-map panel shows the new opacity, exactly as the fragment draws it."""
    from medimg.ui.analysis import ALPHA_KEY

    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = _upload(make_app(PAGE).run(), "a.jpeg", jpeg, "image/jpeg")
    image_src, heat_src = _image_sources(at)
    calls = _count_work(monkeypatch)
    at.slider(key=ALPHA_KEY).set_value(0.0).run()
    assert_clean(at)
    assert _shows_result(at)
    assert {k: v for k, v in calls.items() if k != "page decode"} == \
        {"predict": 0, "uncertainty": 0, "cam": 0, "overlay_base": 0}, calls
    assert calls["page decode"] == 1
    new_image_src, new_heat_src = _image_sources(at)
    assert new_image_src == image_src and new_heat_src != heat_src
    # opacity 0: the heat-map panel is the image itself (as JPEG)
    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(new_heat_src.split(",", 1)[1]))))
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(image_src.split(",", 1)[1]))))
    gray = image if image.ndim == 2 else image[..., 0]
    assert heat.shape[:2] == gray.shape
    assert np.abs(heat.astype(int).mean(axis=2) - gray).mean() < 3


class _Cam:
    """A CAM result as far as the overlay needs it: a heat map on the model's grid, mapped onto any grid."""

    def __init__(self, heat: np.ndarray) -> None:
        self.heatmap = heat
        self.input_size = heat.shape
        self.geometry = "stretch"

    def heatmap_original(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(Image.fromarray(self.heatmap).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("kind", ["gray as rgb", "colour", "float", "large"])
def test_overlay_blend_is_the_explain_overlay(kind: str, rng: np.random.Generator) -> None:
    """The opacity-independent base + a table blend gives exactly medimg.explain.overlay's pixels."""
    from medimg import explain as ex
    from medimg.ui.analysis import overlay, overlay_base

    cam = _Cam(rng.random((16, 16), dtype=np.float32))
    gray = rng.integers(0, 256, (60, 48), dtype=np.uint8)
    display = {"gray as rgb": np.repeat(gray[..., None], 3, axis=2),
               "colour": rng.integers(0, 256, (60, 48, 3), dtype=np.uint8),
               "float": rng.random((60, 48), dtype=np.float32),
               "large": np.repeat(gray[..., None], 3, axis=2)}[kind]
    max_side = 32 if kind == "large" else 1024
    base = overlay_base(display, cam, max_side=max_side)
    assert max(base.display.shape[:2]) <= max_side and base.index.shape == base.display.shape[:2]
    d = base.display.astype(np.float32) / np.float32(255.0) if base.display.dtype == np.uint8 else base.display
    heat = cam.heatmap_original(base.index.shape)
    for alpha in (0.0, 0.05, 0.35, 0.4, 0.8, 1.0):
        want = (ex.overlay(d, heat, alpha) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
        got = base.blend(alpha)
        assert got.dtype == np.uint8 and got.shape == (*base.index.shape, 3)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(overlay(display, cam, 0.4, max_side=max_side).value, base.blend(0.4))
    with pytest.raises(ex.ExplainError):
        base.blend(1.5)


def test_set_heat_image_is_a_new_panel_figure(rng: np.random.Generator) -> None:
    """Replacing the heat-map image of a figure gives the figure built with that heat map from scratch."""
    from medimg.ui.viewer import panel_figure, set_heat_image

    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    heat1, heat2 = (rng.integers(0, 256, (20, 15, 3), dtype=np.uint8) for _ in range(2))
    kw = dict(image_title="window", heat_title="Grad-CAM for pneumonia", revision="u", shape=(80, 60))
    fig = set_heat_image(panel_figure(image, heat1, **kw), heat2)
    assert fig.to_plotly_json() == panel_figure(image, heat2, **kw).to_plotly_json()
    with pytest.raises(ValueError, match="no heat-map panel"):
        set_heat_image(panel_figure(image, None, **kw), heat2)


# ------------------------------------------------------------------------------ safe state (issue 13)


def _two_frame_dicom(body_part: str = "KNEE") -> bytes:
    """A 3-frame DX whose Body Part Examined the tiny model (CHEST) was not trained on: the gate fails."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(3)
    arr = (rng.random((3, 64, 64)) * 200).astype(np.uint8)
    arr[:, 10:40, 20:50] = 250
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.BurnedInAnnotation = "DX", body_part, "NO"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 64, 64, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()
    fp = io.BytesIO()
    pydicom.dcmwrite(fp, ds, enforce_file_format=True)
    return fp.getvalue()


def _anyway(at: AppTest):  # noqa: ANN202 - streamlit Checkbox
    return next(c for c in at.checkbox if c.label.startswith("Analyse anyway"))


def _shows_result(at: AppTest) -> bool:
    return any(m.value.startswith("**Model output") for m in at.markdown)


def test_confirmation_is_keyed_by_model_not_carried_over(make_app, shared_data: Path) -> None:
    """Confirming the warnings for one model must not show another model's result (issue 13, safety)."""
    dcm = (shared_data / "dicom" / "cxr" / "dx_image.dcm").read_bytes()  # THORAX: the tiny models' gate fails
    at = make_app(PAGE).run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    _upload(at, "a.dcm", dcm)
    assert not _shows_result(at)
    _anyway(at).check().run()
    assert _shows_result(at)
    assert "tiny_smallcnn.json" in _anyway(at).key
    # another model: its checks fail too; no result until confirmed again
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_noreport.json").run()
    assert_clean(at)
    assert any(w.value.startswith("**Check failed") for w in at.warning)
    assert not _anyway(at).value
    assert not _shows_result(at)
    assert "Grad-CAM: where the network looked" not in [s.value for s in at.subheader]
    # back to the first model: its own confirmation still stands
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    assert _anyway(at).value and _shows_result(at)


def test_explain_class_is_keyed_by_model(make_app, shared_data: Path) -> None:
    """A class chosen for one model's heat map is not kept for another model (stale 'Explain class' key)."""
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = make_app(PAGE).run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    _upload(at, "a.jpeg", jpeg, "image/jpeg")
    box = next(s for s in at.selectbox if s.label == "Explain class")
    predicted = box.value
    other = 1 - predicted
    box.set_value(other).run()
    assert next(s for s in at.selectbox if s.label == "Explain class").value == other
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_noreport.json").run()
    assert_clean(at)
    box = next(s for s in at.selectbox if s.label == "Explain class")
    assert "tiny_noreport.json" in box.key
    label_md = next(m.value for m in at.markdown if m.value.startswith("**Model output: "))
    assert box.value == predicted and box.options[box.value] in label_md, "explains the new model's own class"


def test_multiframe_confirmed_once_per_model_and_file(make_app) -> None:
    at = _upload(make_app(PAGE).run(), "stack.dcm", _two_frame_dicom())
    assert_clean(at)
    assert not _shows_result(at)
    _anyway(at).check().run()
    assert _shows_result(at)
    next(s for s in at.slider if s.label == "Frame").set_value(2).run()
    assert_clean(at)
    assert _anyway(at).value and _shows_result(at), "a further frame with the same warnings needs no new confirmation"
    assert any("Confirmed for frame 1" in c.value for c in at.caption)
    assert "-1" in _anyway(at).key.rsplit("-", 1)[-1] or _anyway(at).key.endswith("-1")


def test_default_model_is_the_chest_radiograph_one_and_label_follows(make_app) -> None:
    import medimg

    at = make_app(PAGE, medimg.WEIGHTS_DIR).run()
    assert_clean(at)
    picker = at.sidebar.selectbox(key="medimg.model_picker")
    assert picker.value == "kermany_cxr_mobilenet_v2_224.json"
    assert at.get("file_uploader")[0].label.startswith("Chest radiograph (CR, DX)")
    picker.set_value("brain_mri_mobilenet_v2_224.json").run()
    assert at.get("file_uploader")[0].label.startswith("Brain MRI (MR)")
    picker.set_value("busi_mobilenet_v2_288.json").run()
    assert at.get("file_uploader")[0].label.startswith("Breast ultrasound (US)")
    picker.set_value("head_ct_mobilenet_v2_224.json").run()
    assert at.get("file_uploader")[0].label.startswith("Head CT (CT)")


def test_first_page_loads_no_model(make_app, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidebar and the empty page draw without loading a model (fast first page)."""
    from medimg.ui import resources

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded before it was needed")

    monkeypatch.setattr(resources, "_load_predictor", refuse)
    at = make_app(PAGE).run()
    assert_clean(at)
    assert any("Upload an image" in i.value for i in at.info)
    assert any("badge" in m.value and "Runs on" in m.value for m in at.sidebar.markdown)


def test_upload_survives_a_visit_to_the_dashboard(make_app, shared_data: Path) -> None:
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = _upload(make_app("app.py").run(), "a.jpeg", jpeg, "image/jpeg")
    assert _shows_result(at)
    at.switch_page("pages/dashboard.py").run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Test-set dashboard"]
    at.switch_page("pages/analyze.py").run()
    assert_clean(at)
    assert not any("Upload an image" in i.value for i in at.info)
    assert any(c.value.startswith("Current image:") for c in at.caption)
    assert sum(t.get("type") == "image" for t in _viewer(at)["data"]) == 2
    assert _shows_result(at)


def test_read_first_then_reveal(make_app, shared_data: Path) -> None:
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "PNEUMONIA").glob("*.jpeg")))).read_bytes()
    at = make_app(PAGE).run()
    _upload(at, "a.jpeg", jpeg, "image/jpeg")
    at.toggle(key="medimg.read-first").set_value(True).run()
    assert_clean(at)
    assert not _shows_result(at), "the model's output is hidden until the read is recorded"
    assert "Grad-CAM: where the network looked" not in [s.value for s in at.subheader]
    assert "probabilities" not in plotly_specs(at)
    at.radio[0].set_value("pneumonia")
    at.slider[-1].set_value(80)
    at.button[-1].click().run()  # the form's submit button
    assert_clean(at)
    assert _shows_result(at)
    model_label = next(m.value for m in at.markdown if m.value.startswith("**Model output: "))
    verdict = [s.value for s in at.success] + [w.value for w in at.warning]
    assert any(v.startswith("You read **pneumonia** (80 % confident)") for v in verdict), verdict
    table = at.dataframe[-1].value if "Your read" in at.dataframe[-1].value else None
    assert table is not None and list(table["Your read"]) == ["pneumonia"]
    assert list(table["Agree"]) == ["yes" if "pneumonia" in model_label else "no"]
    assert "a.jpeg" not in rendered_text(at)


def test_display_warnings_beside_the_image(make_app, shared_data: Path) -> None:
    j2k = (shared_data / "dicom" / "cxr" / "JPEG2KLossless_1s_1f_u_16_16.dcm").read_bytes()
    at = _upload(make_app(PAGE).run(), "a.dcm", j2k)
    assert_clean(at)
    main = [w.value for w in at.main.warning]
    assert any("blank white frame" in w for w in main) and any("negative" in w for w in main)
    assert at.toggle(key=next(t.key for t in at.toggle if t.label == "Invert")).value is True
    us = (shared_data / "dicom" / "other" / "OBXXXX1A_rle_2frame.dcm").read_bytes()
    at.file_uploader(key="medimg.upload").clear()
    _upload(at, "b.dcm", us)
    assert_clean(at)
    assert any("burned into the pixels" in w.value for w in at.main.warning)
    assert any("The pixels are not de-identified" in c.value for c in at.caption)
    assert not any(n.label.startswith("Center") for n in at.number_input), "no window box for colour images"


def test_ct_opens_in_soft_tissue_with_whole_hu(make_app, shared_data: Path) -> None:
    ct = (shared_data / "dicom" / "ct" / "CT1_UNC.dcm").read_bytes()
    at = _upload(make_app(PAGE).run(), "ct.dcm", ct)
    assert_clean(at)
    center = next(n for n in at.number_input if n.label == "Center (HU)")
    width = next(n for n in at.number_input if n.label == "Width (HU)")
    assert (center.value, width.value) == (40, 400)
    assert _viewer(at)["layout"]["annotations"][0]["text"] == "soft tissue: center 40, width 400 HU"
    preset = next(s for s in at.selectbox if s.label == "Window preset")
    preset.set_value(1).run()  # lung
    assert next(n for n in at.number_input if n.label == "Center (HU)").value == -600


def test_report_downloads_are_built_in_memory(make_app, shared_data: Path) -> None:
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = _upload(make_app(PAGE).run(), "named.jpeg", jpeg, "image/jpeg")
    assert_clean(at)
    buttons = at.get("download_button")
    labels = [b.proto.label for b in buttons]
    assert "Download PDF report" in labels and "Download JSON report" in labels


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


def test_multiframe_slider_and_typed_window(make_app) -> None:
    frames = [Image.fromarray(np.full((64, 72), 40 * (i + 1), dtype=np.uint8)) for i in range(3)]
    for i, f in enumerate(frames):  # some structure so the content check passes
        f.paste(255, (8 * i, 8, 8 * i + 20, 40))
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    at = _upload(make_app(PAGE).run(), "stack.tif", buf.getvalue(), "image/tiff")
    assert_clean(at)
    slider = next(s for s in at.slider if s.label == "Frame")
    assert (slider.min, slider.max) == (1, 3)
    center = next(n for n in at.number_input if n.label.startswith("Center"))
    width = next(n for n in at.number_input if n.label.startswith("Width"))
    assert isinstance(center.value, int) and isinstance(width.value, int), "8-bit values: whole numbers"
    center.set_value(200)
    width.set_value(50)
    at.run()
    assert _viewer(at)["layout"]["annotations"][0]["text"].startswith("custom: center 200, width 50")
    # one window across frames: moving to frame 3 keeps it
    next(s for s in at.slider if s.label == "Frame").set_value(3).run()
    assert_clean(at)
    attrs = dict(zip(at.dataframe[0].value["Attribute"], at.dataframe[0].value["Value"], strict=True))
    assert attrs["Frame"] == "3 of 3"
    assert next(n for n in at.number_input if n.label.startswith("Center")).value == 200
    assert _viewer(at)["layout"]["annotations"][0]["text"].startswith("custom: center 200, width 50")


def test_no_model_shows_image_without_analysis(make_app, tmp_path: Path, shared_data: Path) -> None:
    jpeg = next(iter(sorted((shared_data / "kermany-cxr" / "test" / "NORMAL").glob("*.jpeg")))).read_bytes()
    at = make_app(PAGE, tmp_path).run()
    assert_clean(at)
    assert any("No model weights found" in w.value for w in at.sidebar.warning)
    assert_notice(at)
    _upload(at, "a.jpeg", jpeg, "image/jpeg")
    assert_clean(at)
    assert any("No model is available" in i.value for i in at.info)
    assert sum(t.get("type") == "image" for t in _viewer(at)["data"]) == 1


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


def test_steps_print_the_real_size_of_a_large_image(make_app) -> None:
    """The full-size steps keep only a preview (memory contract), but the size printed is the image's own."""
    rng = np.random.default_rng(4)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (2100, 1500), dtype=np.uint8)).save(buf, format="PNG")
    at = _upload(make_app(PAGE).run(), "big.png", buf.getvalue(), "image/png")
    assert_clean(at)
    captions = [c.value for c in at.caption]
    assert any("2100 x 1500 px" in c for c in captions), captions
    assert any("64 x 64 px" in c for c in captions), captions  # the tiny model's input
