"""Predictor: calibrated probabilities, determinism, input validation and the applicability gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import ModelInputError
from medimg.io import load_image
from medimg.io.image import MedicalImage, Window
from medimg.predict import Predictor, choose_device, softmax

RGB8 = (Window(127.5, 255.0, "stored range", "LINEAR_EXACT"),)



@pytest.fixture(scope="module")
def pred(tiny_spec_path: Path) -> Predictor:
    return Predictor.from_spec(tiny_spec_path, device="cpu")


def _img(pixels: np.ndarray, **kw) -> MedicalImage:
    kw.setdefault("format", "png")
    return MedicalImage(pixels=np.asarray(pixels, np.float32), windows=RGB8, units="8-bit", **kw)


def _texture(seed: int = 0, shape: tuple[int, ...] = (120, 100)) -> MedicalImage:
    return _img(np.random.default_rng(seed).uniform(0, 255, shape))


def _load_dicom_or_skip(src) -> MedicalImage:  # noqa: ANN001
    try:
        return load_image(src)
    except ModuleNotFoundError as err:  # the DICOM loader is being written in medimg/io/dicom/
        pytest.skip(f"DICOM loader not available yet: {err}")


def test_probabilities_sum_to_one_and_follow_temperature(pred: Predictor) -> None:
    r = pred.predict(_texture())
    assert r.probs.shape == (2,) and r.probs.dtype == np.float64
    assert r.probs.sum() == pytest.approx(1.0, abs=1e-12) and np.all(r.probs >= 0)
    np.testing.assert_allclose(r.probs, softmax(r.logits[None], pred.spec.temperature)[0], rtol=1e-12)
    assert pred.spec.temperature == 1.5
    # a different temperature changes the probabilities the way softmax(z / T) says
    hot = Predictor(pred.model, pred.spec.replace(temperature=4.0), "cpu").predict(_texture())
    np.testing.assert_array_equal(hot.logits, r.logits)
    np.testing.assert_allclose(hot.probs, softmax(r.logits[None], 4.0)[0], rtol=1e-12)
    assert abs(hot.probs[0] - 0.5) < abs(r.probs[0] - 0.5) or np.isclose(r.probs[0], 0.5)
    assert r.label == pred.spec.labels[r.label_index] and set(r.probabilities) == set(pred.spec.labels)
    assert r.device == "cpu" and set(r.seconds) == {"preprocess", "predict", "gate"}


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])


def test_same_input_twice_gives_identical_output(pred: Predictor) -> None:
    a, b = pred.predict(_texture(3)), pred.predict(_texture(3))
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert a.gate == b.gate
    x = np.stack([pred.preprocess(_texture(s)).model_input for s in range(5)])
    np.testing.assert_array_equal(pred.predict_proba(x), pred.predict_proba(x))
    # batched and one-by-one agree
    one = np.concatenate([pred.logits(x[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(pred.logits(x, batch_size=2), one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [
    np.zeros((1, 64, 64), np.float32),  # no batch axis
    np.zeros((1, 3, 64, 64), np.float32),  # wrong channels
    np.zeros((1, 1, 32, 64), np.float32),  # wrong size
    np.zeros((1, 1, 64, 64), np.float64),  # wrong dtype
    np.zeros((1, 1, 64, 64), np.int64),
    np.full((1, 1, 64, 64), np.nan, np.float32),
    np.full((2, 1, 64, 64), np.inf, np.float32),
])
def test_bad_model_input_is_refused(pred: Predictor, bad: np.ndarray) -> None:
    with pytest.raises(ModelInputError) as err:
        pred.logits(bad)
    assert "Model input" in str(err.value)


def test_decide_threshold_rule(pred: Predictor) -> None:
    assert pred.decide(np.array([0.7, 0.3])) == 0
    p2 = Predictor(pred.model, pred.spec.replace(threshold=0.2), "cpu")
    assert p2.decide(np.array([0.7, 0.3])) == 1 and p2.decide(np.array([0.85, 0.15])) == 0


def test_choose_device() -> None:
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_predict_does_not_mutate_image_or_model(pred: Predictor) -> None:
    im = _texture(4)
    px = im.pixels.copy()
    before = {k: v.clone() for k, v in pred.model.state_dict().items()}
    pred.predict(im)
    np.testing.assert_array_equal(im.pixels, px)
    assert not pred.model.training
    assert all(torch.equal(before[k], v) for k, v in pred.model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in pred.model.modules())


# --- gate ----------------------------------------------------------------------------------------------------

def _failed(r) -> set[str]:  # noqa: ANN001
    return {c.name for c in r.gate.failures}


def test_gate_flags_blank_image(pred: Predictor) -> None:
    r = pred.predict(_img(np.full((128, 128), 37.0)))
    assert "content" in _failed(r) and not r.gate.passed
    assert "blank" in next(c.reason for c in r.gate.failures if c.name == "content")


def test_gate_flags_colour_input(pred: Predictor) -> None:
    r = pred.predict(_img(np.random.default_rng(0).uniform(0, 255, (96, 96, 3)), photometric="RGB"))
    assert "channels" in _failed(r)
    assert "grayscale" in next(c.reason for c in r.gate.failures if c.name == "channels")


def test_gate_flags_wrong_modality_dicom_pydicom_ct(pred: Predictor) -> None:
    from pydicom.data import get_testdata_file

    im = _load_dicom_or_skip(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    assert im.metadata.get("Modality") == "CT"
    r = pred.predict(im)
    assert "modality" in _failed(r)
    assert "CT" in next(c.reason for c in r.gate.failures if c.name == "modality")


def test_gate_flags_wrong_modality_dicom_shared_ct(pred: Predictor, shared_data: Path) -> None:
    files = sorted((shared_data / "dicom" / "ct").glob("*.dcm"))
    if not files:
        pytest.skip("no CT DICOMs in shared data")
    r = pred.predict(_load_dicom_or_skip(files[0]))
    assert "modality" in _failed(r)


@pytest.fixture(scope="module")
def gated(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Predictor:
    """The tiny model with a distribution gate fitted on the first shared chest X-rays of each split."""
    from medimg.training.gate_fit import fit_gate

    out = tmp_path_factory.mktemp("gated")
    for p in tiny_model_dir.iterdir():
        shutil.copy(p, out / p.name)
    fit_gate(out / "tiny_smallcnn.json", quantile=0.95, limit=60, out_of_scope=False, device="cpu")
    return Predictor.from_spec(out / "tiny_smallcnn.json", device="cpu")


def test_ood_check_flags_noise_and_out_of_scope(gated: Predictor, shared_data: Path) -> None:
    from medimg.catalog import read_manifest
    from medimg.training.reference_sets import synthetic_images

    noise = gated.predict(_texture(11, (256, 256)))
    assert "distribution" in _failed(noise)
    photo = gated.predict(next(synthetic_images("photo-like colour textures", 1, seed=2)))
    assert "distribution" in _failed(photo) and "channels" in _failed(photo)
    rows = [r for r in read_manifest(shared_data / "busi") if r["split"] == "test"][:3]
    for row in rows:
        assert "distribution" in _failed(gated.predict(load_image(shared_data / "busi" / row["path"])))
    # an in-distribution chest X-ray from the test split passes the distribution check
    cxr = [r for r in read_manifest(shared_data / "kermany-cxr") if r["split"] == "test"][:5]
    ok = [not ({"distribution"} & _failed(gated.predict(load_image(shared_data / "kermany-cxr" / r["path"]))))
          for r in cxr]
    assert sum(ok) >= 4
