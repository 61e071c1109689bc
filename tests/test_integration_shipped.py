"""The shipped chest X-ray model: reproduces its stored test results, handles the shared chest DICOMs,
and (once fitted) its out-of-distribution gate passes chest X-rays and refuses out-of-scope images.

Skips when ``weights/kermany_cxr_mobilenet_v2_224.*`` is not there."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import MedimgError
from medimg.evaluate import EvalReport
from medimg.io import load_image
from medimg.predict import Predictor
from medimg.spec import load_spec


@pytest.fixture(scope="module")
def shipped(shipped_spec: Path) -> Predictor:
    return Predictor.from_spec(shipped_spec, device="cpu")


@pytest.fixture(scope="module")
def report(shipped_spec: Path) -> EvalReport:
    p = shipped_spec.with_name(shipped_spec.stem + ".eval.json")
    if not p.exists():
        pytest.skip("the shipped model's eval report is not there")
    return EvalReport.load(p)


def test_shipped_files_are_consistent(shipped_spec: Path, report: EvalReport) -> None:
    spec = load_spec(shipped_spec)
    w = shipped_spec.with_suffix(".safetensors")
    assert spec.sha256 == hashlib.sha256(w.read_bytes()).hexdigest()
    assert spec.labels == ("normal", "pneumonia") and spec.positive_label == 1 and spec.temperature > 0
    assert report.model == spec.name and report.split == "test" and len(report.ids) == len(report.y_true) == 624
    np.testing.assert_allclose(report.probs.sum(1), 1.0, atol=1e-5)
    assert report.metrics["accuracy"] == pytest.approx(spec.metrics["test"]["accuracy"], abs=1e-12)
    assert spec.metrics["test"]["auroc"] > 0.9  # a useful model, not a placeholder


def test_app_path_reproduces_stored_probabilities(shipped: Predictor, report: EvalReport, shared_data: Path) -> None:
    """~50 test images through load_image -> preprocess -> Predictor match the training-time report."""
    folder = shared_data / "kermany-cxr"
    idx = np.linspace(0, len(report.ids) - 1, 50).astype(int)
    for i in idx:
        r = shipped.predict(load_image(folder / report.ids[i]))
        np.testing.assert_allclose(r.probs, report.probs[i], atol=1e-5, err_msg=report.ids[i])


@pytest.mark.slow
def test_full_test_split_reproduces_spec_metrics(shipped_spec: Path) -> None:
    from medimg.training.evaluation import evaluate_split

    spec = load_spec(shipped_spec)
    rep = evaluate_split(shipped_spec, "test", device="cpu")
    assert rep.metrics["n"] == 624
    assert rep.metrics["accuracy"] == pytest.approx(spec.metrics["test"]["accuracy"], abs=1e-6)
    assert rep.metrics["auroc"] == pytest.approx(spec.metrics["test"]["auroc"], abs=1e-6)


def test_every_shared_chest_dicom_gets_a_prediction(shipped: Predictor, shared_data: Path) -> None:
    files = sorted((shared_data / "dicom" / "cxr").glob("*.dcm"))
    if not files:
        pytest.skip("no chest DICOMs in shared data")
    undecodable = []
    for f in files:
        try:
            image = load_image(f)
        except (MedimgError, ModuleNotFoundError) as err:
            undecodable.append(f"{f.name}: {type(err).__name__}: {err}")
            continue
        r = shipped.predict(image)
        assert np.all(np.isfinite(r.probs)) and r.probs.sum() == pytest.approx(1.0), f.name
        assert {c.name for c in r.gate.failures}.isdisjoint({"modality", "body part", "content"}), (
            f.name, r.gate.as_dict())
    if undecodable:
        pytest.skip("the io loader cannot decode: " + "; ".join(undecodable))


def _distribution(r) -> object:  # noqa: ANN001
    return next(c for c in r.gate.checks if c.name == "distribution")


def test_fitted_gate_passes_chest_xrays_and_refuses_out_of_scope(shipped: Predictor, report: EvalReport,
                                                                  shared_data: Path) -> None:
    gate = shipped.spec.gate.get("distribution")
    if not gate:
        pytest.skip("no distribution gate fitted yet (run `medimg fit-gate --model weights/<name>.json`)")
    fit = shipped.spec.gate["fit"]
    assert fit["test_pass_rate"] >= 0.95  # the requirement, as measured by fit-gate on all 624 test images
    folder = shared_data / "kermany-cxr"
    idx = np.linspace(0, len(report.ids) - 1, 40).astype(int)
    passed = [_distribution(shipped.predict(load_image(folder / report.ids[i]))).passed for i in idx]
    # 40 of the 624 test images through the app path: within 3 binomial SD of the rate fit-gate measured on all
    p = fit["test_pass_rate"]
    assert np.mean(passed) >= p - 3 * np.sqrt(p * (1 - p) / len(idx))
    from medimg.training.reference_sets import synthetic_images

    for kind in ("noise", "photo-like colour textures", "colour gradients"):
        for im in synthetic_images(kind, 3, seed=123):
            d = _distribution(shipped.predict(im))
            assert not d.passed and "looks unlike" in d.reason, kind
    for sub in ("brain-mri", "pbc-blood"):
        from medimg.training.reference_sets import _manifest_sample

        for p in _manifest_sample(shared_data / sub, 5, seed=99):
            assert not _distribution(shipped.predict(load_image(p))).passed, p.name


def test_fitted_gate_refuses_adult_chest_films_it_was_not_fitted_on(shipped: Predictor, shared_data: Path) -> None:
    """Adult films of the report half of the adult-cxr patient split (never fitted on) are refused, most because
    they resemble the adult reference set; the stored refusal rate on that half says the same, and the adult
    reference score refuses at least as many of them as the layers alone (the MobileNetV2 model's layers alone
    already refuse nearly all: 282 of 283 at the fit of November 2026)."""
    from medimg.training.reference_sets import adult_cxr_rows, report_reference_sets

    d = shipped.spec.gate.get("distribution") or {}
    if "discriminator" not in d or not adult_cxr_rows("report"):
        pytest.skip("no adult reference set in the gate or in the shared data")
    stored = shipped.spec.gate["fit"]["out_of_scope"]
    (title,) = [k for k in stored if k.startswith("adult chest radiographs (NIH JPEG, report half")]
    assert stored[title]["n"] >= 250 and stored[title]["ood_flag_rate"] >= 0.95
    ref = shipped.spec.gate["fit"]["reference"]
    assert ref["name"] == "adult chest radiographs" and ref["n_fit"] >= 250 and ref["fit_refusal_rate"] >= 0.95
    assert stored[title]["ood_flag_rate"] >= stored[title]["ood_flag_rate_without_reference"] >= 0.9
    (kind, name, images), *_ = report_reference_sets("kermany-cxr", limit=12)
    assert (kind, name) == ("out_of_scope", title)
    checks = [_distribution(shipped.predict(im)) for im in images]
    assert sum(not c.passed for c in checks) >= 11
    assert sum("resembles adult chest radiographs" in c.reason for c in checks if not c.passed) >= 9
