"""AppTest over every shipped model: the picker offers each one, each analyses an image of its own task, the
dashboard shows each one's test-set report, an image of a task finds its model (a head CT DICOM, a cervical
cytology PNG), and the training lab compares with the shipped PneumoniaMNIST model at its own input size."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import assert_clean, plotly_array, plotly_specs
from PIL import Image

from medimg import list_weights, load_spec
from medimg.evaluate import EvalReport

REPO = Path(__file__).resolve().parents[2]
PAGE = "pages/analyze.py"
SHIPPED = list_weights(REPO / "weights")
PICKER = "medimg.model_picker"
CHEST = "kermany_cxr_mobilenet_v2_224.json"
HEAD_CT = "head_ct_mobilenet_v2_224.json"
CERVIX = "cric_cervix_mobilenet_v2_128.json"
BLOOD = "pbc_blood_mobilenet_v2_224.json"


def _test_image(spec_path: Path, shared: Path) -> tuple[str, bytes]:
    """The first image of the model's test split, as uploaded bytes."""
    spec = load_spec(spec_path)
    task = spec.training["config"]["task"]
    first_id = json.loads(spec_path.with_name(f"{spec.name}.eval.json").read_text())["ids"][0]
    from medimg.training.tasks import get_task

    t = get_task(task)
    if t.medmnist_flag:
        arr = np.load(shared / "medmnist" / f"{t.medmnist_flag}.npz")["test_images"][int(first_id)]
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return "benchmark.png", buf.getvalue()
    path = shared / t.folder / first_id
    return "scan" + path.suffix, path.read_bytes()


def _report(spec_path: Path) -> EvalReport:
    return EvalReport.load(spec_path.with_name(f"{spec_path.stem}.eval.json"))


def _needs(*names: str) -> None:
    missing = [n for n in names if not (REPO / "weights" / n).exists()]
    if missing:
        pytest.skip(f"not shipped: {', '.join(missing)}")


def _suggestions(at) -> list[str]:  # noqa: ANN001 - AppTest
    return [i.value for i in at.info if "Choose it here" in i.value or "Choose one here" in i.value]


def _failed_checks(at) -> list[str]:  # noqa: ANN001 - AppTest
    return [w.value.split(")", 1)[0].removeprefix("**Check failed (") for w in at.warning
            if w.value.startswith("**Check failed (")]


def _choose_suggested(at, spec_file: str, uploader_label: str) -> list[str]:  # noqa: ANN001 - AppTest
    """Click the page's "Use <model>" button of ``spec_file``: the picker and the upload's label follow, no model
    is suggested any more; returns the checks that still fail."""
    at.button(key=f"use-model-{Path(spec_file).stem}").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key=PICKER).value == spec_file
    assert at.get("file_uploader")[0].label.startswith(uploader_label)
    assert not _suggestions(at)
    return _failed_checks(at)


def test_picker_offers_every_shipped_model(make_app) -> None:
    at = make_app(PAGE, REPO / "weights").run()
    assert_clean(at)
    picker = at.sidebar.selectbox(key=PICKER)
    assert len(picker.options) == len(SHIPPED) >= 8
    assert set(picker.options) == {load_spec(p).title for p in SHIPPED}
    tasks = {load_spec(p).training["config"]["task"] for p in SHIPPED}
    assert {"head-ct", "cric-cervix"} <= tasks
    # the full-resolution chest radiograph model is the default, not the 28 px PneumoniaMNIST benchmark one
    assert picker.value == CHEST
    assert at.get("file_uploader")[0].label.startswith("Chest radiograph (CR, DX)")


def test_default_model_prefers_full_resolution_chest_films_over_the_benchmark() -> None:
    """Both chest models take 224 px inputs; the benchmark one (MedMNIST, 28 px images) sorts first by name in a
    folder where it is called ``a_...``, and is still not the default."""
    from dataclasses import replace

    from medimg.ui.resources import ModelOption, default_model

    chest = load_spec(REPO / "weights" / CHEST) if (REPO / "weights" / CHEST).exists() else None
    if chest is None:
        pytest.skip("the chest model is not shipped")
    bench = replace(chest, name="a_bench", training={**chest.training, "data": "medmnist:pneumoniamnist"})
    options = [ModelOption(Path("a_bench.json"), bench), ModelOption(Path("b_chest.json"), chest)]
    assert default_model(options).path.name == "b_chest.json"
    small = replace(chest, name="c_small", preprocess=replace(chest.preprocess, input_size=(96, 96)))
    options.append(ModelOption(Path("0_small.json"), small))
    assert default_model(options).path.name == "b_chest.json"  # then the largest input
    assert default_model(options[:1]).path.name == "a_bench.json"  # a benchmark model when it is the only one


def test_head_ct_dicom_is_offered_the_head_ct_model(make_app, shared_data: Path) -> None:
    """A CT DICOM of the shared head CT series (a supratentorial slice, 512 x 512 with air and head rest) under the
    default chest model: the chest model's modality check fails, the page offers the head CT model, one click
    selects it, and the head CT model analyses the slice with every gate check passed (brain window, cut to the
    head, as its training slices)."""
    import csv

    _needs(CHEST, HEAD_CT)
    head = load_spec(REPO / "weights" / HEAD_CT)
    series = shared_data / "dicom" / "head-ct"
    if not (series / "MANIFEST.csv").is_file():
        pytest.skip("no head CT DICOM in the shared data")
    rows = list(csv.DictReader((series / "MANIFEST.csv").open()))
    dcm = [series / min(rows, key=lambda r: abs(float(r["z_mm"]) - 64.0))["path"]]  # mid-ventricular level
    at = make_app(PAGE, REPO / "weights").run()
    assert at.sidebar.selectbox(key=PICKER).value == CHEST
    at.file_uploader(key="medimg.upload").upload("slice.dcm", dcm[0].read_bytes(), "application/dicom")
    at.run()
    assert_clean(at)
    assert "modality" in _failed_checks(at)
    assert _suggestions(at) == [f"This image's header (Modality CT) fits **{head.title}** better than the selected "
                                "model. Choose it here or in the sidebar's model picker."]
    assert [b.label for b in at.button if b.key.startswith("use-model-")] == [f"Use {head.title}"]
    failed = _choose_suggested(at, HEAD_CT, "Head CT (CT)")
    assert failed == [], failed
    assert not [c for c in at.checkbox if c.label.startswith("Analyse anyway")]
    captions = " ".join(c.value for c in at.caption)  # "what the network saw"
    assert "model window 40/80 HU" in captions and "cut to the foreground box" in captions
    bars = plotly_specs(at)["probabilities"]["data"][0]
    assert list(plotly_array(bars["y"])) == ["normal", "hemorrhage"]
    # the choice is kept: the same session on another run still has the head CT model
    at.run()
    assert at.sidebar.selectbox(key=PICKER).value == HEAD_CT


def test_cervical_cytology_png_is_offered_the_colour_models(make_app, shared_data: Path) -> None:
    """A CRIC cell crop as an RGB PNG under the default (grayscale) chest model: the channels check fails, the
    page offers the colour models (blood cells, cervical cytology); choosing the cervical one gives the 6 Bethesda
    classes with the probabilities of the model's stored test report for that image."""
    _needs(CHEST, CERVIX, BLOOD)
    cervix_path = REPO / "weights" / CERVIX
    cervix, report = load_spec(cervix_path), _report(cervix_path)
    i = 0
    rgb = np.asarray(Image.open(shared_data / "cric-cervix" / report.ids[i]).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    at = make_app(PAGE, REPO / "weights").run()
    at.file_uploader(key="medimg.upload").upload("cell.png", buf.getvalue(), "image/png")
    at.run()
    assert_clean(at)
    assert "channels" in _failed_checks(at)
    colour = sorted((load_spec(p) for p in SHIPPED if load_spec(p).preprocess.in_chans == 3), key=lambda s: s.name)
    assert {"cric_cervix_mobilenet_v2_128", "pbc_blood_mobilenet_v2_224"} <= {s.name for s in colour}
    assert len(colour) <= 3, "the page offers the models of the image's kind when there are at most three"
    (text,) = _suggestions(at)
    assert text.startswith("This image is in colour; the selected model was trained on grayscale images.")
    assert all(f"**{s.title}**" in text for s in colour)
    assert {b.label for b in at.button if b.key.startswith("use-model-")} == {f"Use {s.title}" for s in colour}
    failed = _choose_suggested(at, CERVIX, "Cervix micrograph (SM, XC, OT)")
    assert "channels" not in failed, failed
    if failed:
        assert failed == ["distribution"], failed
        next(c for c in at.checkbox if c.label.startswith("Analyse anyway")).check()
        at.run()
        assert_clean(at)
    bars = plotly_specs(at)["probabilities"]["data"][0]
    assert list(plotly_array(bars["y"])) == list(cervix.labels) == ["NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC"]
    np.testing.assert_allclose(plotly_array(bars["x"]), report.probs[i], atol=1e-4)


@pytest.mark.parametrize("spec_path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_shipped_model_analyses_its_own_test_image(make_app, shared_data: Path, spec_path: Path) -> None:
    spec = load_spec(spec_path)
    name, data = _test_image(spec_path, shared_data)
    at = make_app(PAGE, REPO / "weights").run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value(spec_path.name)
    at.run()
    at.file_uploader(key="medimg.upload").upload(name, data, "application/octet-stream")
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    if "discriminator" in spec.gate.get("distribution", {}):
        # the chest gates trade ~5 % of in-distribution passes (mostly normal films of the shifted Kermany test
        # folder) for refusing adult films: when this image is one of them, confirm and go on
        anyway = [c for c in at.checkbox if c.label.startswith("Analyse anyway")]
        if anyway:
            anyway[0].check()
            at.run()
            assert_clean(at)
    else:
        assert any("Applicability checks passed" in s.value for s in at.success), [w.value for w in at.warning]
    bars = plotly_specs(at)["probabilities"]["data"][0]
    assert list(plotly_array(bars["y"])) == list(spec.labels)
    assert abs(plotly_array(bars["x"]).sum() - 1) < 1e-6
    # a Bethesda model also names the grade (the most probable sum of its classes); no other model does
    grade = [m.value for m in at.markdown if m.value.startswith("**Bethesda grade:")]
    if set(spec.labels) == {"NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC"}:
        p = dict(zip(plotly_array(bars["y"]), plotly_array(bars["x"]), strict=True))
        sums = {"NILM": p["NILM"], "low-grade": p["ASC-US"] + p["LSIL"],
                "high-grade": p["ASC-H"] + p["HSIL"] + p["SCC"]}
        top = max(sums, key=sums.get)
        assert len(grade) == 1 and grade[0].startswith(f"**Bethesda grade: {top}** (")
        assert f"high-grade {sums['high-grade']:.1%}" in grade[0]
    else:
        assert grade == []
    # the stability sentence is shown
    texts = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert any("Stability:" in t for t in texts), texts
    assert "Grad-CAM: where the network looked" in [s.value for s in at.subheader]


@pytest.mark.parametrize("spec_path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_dashboard_of_each_shipped_model(make_app, spec_path: Path) -> None:
    """Binary and multi-class reports: the model's own report (its test images and their classes), the metrics
    table with the stored accuracy, the K x K confusion matrix with the model's labels and the counts of its
    stored probabilities, the per-class table of a multi-class model, no traceback."""
    from sklearn.metrics import confusion_matrix

    spec, report = load_spec(spec_path), _report(spec_path)
    at = make_app("pages/dashboard.py", REPO / "weights").run()
    at.sidebar.selectbox(key=PICKER).set_value(spec_path.name).run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == ["Test-set dashboard"]
    counts = ", ".join(f"{label}: {int((report.y_true == k).sum())}" for k, label in enumerate(spec.labels))
    assert any(c.value.startswith(f"{spec.title} on the **test** split: {len(report.y_true)} images ({counts}).")
               for c in at.caption), [c.value for c in at.caption]
    table = at.dataframe[0].value
    metrics = dict(zip(table["Metric"], table["Value"], strict=True))
    assert "AUROC" in metrics and metrics["Accuracy"] == f"{spec.metrics['test']['accuracy']:.3f}"
    if spec.num_classes > 2:
        assert "Specificity (macro, one-vs-rest)" in metrics
        per_class = next(d.value for d in at.dataframe if "Class" in d.value.columns)
        assert list(per_class["Class"]) == list(spec.labels)
        assert [int(n) for n in per_class["Images"]] == [int((report.y_true == k).sum())
                                                         for k in range(spec.num_classes)]
    else:
        assert "Specificity" in metrics
    figs = plotly_specs(at)
    heat = next(t for t in figs["cm"]["data"] if t.get("type") == "heatmap")
    assert heat["x"] == heat["y"] == list(spec.labels)
    z = plotly_array(heat["z"]).reshape(spec.num_classes, spec.num_classes)
    if spec.num_classes == 2:
        pos = spec.positive_label if spec.positive_label is not None else 1
        t = report.threshold if report.threshold is not None else (spec.threshold or 0.5)
        y_pred = np.where(report.probs[:, pos] >= t, pos, 1 - pos)
    else:
        y_pred = report.probs.argmax(axis=1)
    np.testing.assert_array_equal(z, confusion_matrix(report.y_true, y_pred, labels=range(spec.num_classes)))
    assert {"calibration", "training"} <= set(figs)
    # the model card: the ImageNet start (every shipped model is fine-tuned from it), its sha256 and the weights'
    card = next(dict(zip(t.value["Item"], t.value["Value"], strict=True)) for t in at.table
                if "Item" in t.value.columns)
    init = spec.training["initial_weights"]
    assert card["Initial weights"].startswith(init["name"]) and init["sha256"][:12] in card["Initial weights"]
    assert spec.sha256[:12] in card["Weights file"] and card["Command"] == spec.training["command"]
    assert f"{spec.preprocess.input_size[0]} x {spec.preprocess.input_size[1]} px" in card["Network input"]


def test_training_lab_compares_with_the_shipped_pneumoniamnist_model_at_its_own_size(shared_data: Path) -> None:
    """The lab's 28 px PneumoniaMNIST test images go to the shipped 224 px model through its own preprocessing:
    its metrics are those of its stored test report on the same images."""
    from medimg.evaluate import compute_metrics
    from medimg.ui import train_lab as tl

    name = "pneumoniamnist_mobilenet_v2_224.json"
    _needs(name)
    if not (shared_data / "medmnist" / "pneumoniamnist.npz").exists():
        pytest.skip("PneumoniaMNIST is not in the shared data")
    spec, report = load_spec(REPO / "weights" / name), _report(REPO / "weights" / name)
    cfg = tl.LabConfig(limit=48)
    out = tl.shipped_on_split(cfg, REPO / "weights")
    assert out is not None and out["name"] == spec.name and out["title"] == spec.title
    assert out["architecture"] == "mobilenet_v2" and out["input_size"] == (224, 224)
    data, _ = tl._load_splits(cfg)
    ids = list(data["splits"]["test"].ids)
    assert len(ids) == out["metrics"]["n"] == 48
    rows = [report.ids.index(i) for i in ids]
    want = compute_metrics(report.y_true[rows], report.probs[rows], spec.positive_label, spec.threshold)
    for k in ("accuracy", "sensitivity", "specificity"):
        assert out["metrics"][k] == pytest.approx(want[k], abs=1e-12), k
    assert out["metrics"]["auroc"] == pytest.approx(want["auroc"], abs=1e-3)
    assert tl.shipped_on_split(cfg, REPO / "weights") is out  # computed once per process, task, subset and file


def test_training_lab_runs_the_shipped_model_when_its_report_does_not_list_the_images(
        shared_data: Path, tmp_path: Path) -> None:
    """Without a stored report (or with other images), the shipped model runs on the lab's test images and gives
    what its stored report says for them."""
    import shutil

    from medimg.ui import train_lab as tl

    name = "pneumoniamnist_mobilenet_v2_224"
    _needs(f"{name}.json")
    if not (shared_data / "medmnist" / "pneumoniamnist.npz").exists():
        pytest.skip("PneumoniaMNIST is not in the shared data")
    for ext in (".json", ".safetensors"):  # the model without its report
        shutil.copy(REPO / "weights" / f"{name}{ext}", tmp_path / f"{name}{ext}")
    cfg = tl.LabConfig(limit=24)
    ran = tl.shipped_on_split(cfg, tmp_path)
    from_report = tl.shipped_on_split(cfg, REPO / "weights")
    assert ran is not None and from_report is not None and ran is not from_report
    for k in ("accuracy", "sensitivity", "specificity"):
        assert ran["metrics"][k] == pytest.approx(from_report["metrics"][k], abs=1e-12), k
