"""Integration: the shipped chest X-ray model on real radiographs from the shared data (skips without them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg import explain as ex
from medimg.io import load_image


@pytest.fixture(scope="module")
def shipped_predictor(shipped_spec: Path):
    from medimg.predict import Predictor

    return Predictor.from_spec(shipped_spec, device="cpu")


def _pneumonia_jpeg(shared_data: Path) -> Path:
    folder = shared_data / "kermany-cxr" / "test" / "PNEUMONIA"
    files = sorted(folder.glob("*.jpeg"))
    if not files:
        pytest.skip(f"no test images in {folder}")
    return files[0]


def test_cam_on_a_real_chest_xray(shipped_predictor, shared_data: Path) -> None:
    img = load_image(_pneumonia_jpeg(shared_data))
    pred = shipped_predictor.predict(img)
    for method in ("gradcam", "hirescam", "eigencam"):
        r = ex.cam(shipped_predictor, pred.preprocessed, method=method)
        h = r.heatmap
        assert h.shape == tuple(shipped_predictor.spec.preprocess.input_size) and h.dtype == np.float32
        assert np.isfinite(h).all() and h.min() >= 0 and h.max() <= 1
        assert h.std() > 1e-3, f"{method} map is constant"
        back = r.heatmap_original(img.shape)
        assert back.shape == img.shape[:2] and np.isfinite(back).all()
        rgb = ex.overlay(img.display(), back, alpha=0.4)
        assert rgb.shape == (*img.shape[:2], 3) and 0 <= rgb.min() and rgb.max() <= 1
    assert ex.hook_count(shipped_predictor.model) == 0


def test_sanity_and_faithfulness_on_a_real_chest_xray(shipped_predictor, shared_data: Path) -> None:
    pred = shipped_predictor.predict(load_image(_pneumonia_jpeg(shared_data)))
    r = ex.cam(shipped_predictor, pred.preprocessed)
    rho = ex.randomisation_sanity(shipped_predictor, pred.preprocessed, method="gradcam")
    assert rho < 0.9, f"Grad-CAM barely changes when the top layers are randomised (rho={rho:.2f})"
    di = ex.deletion_insertion(shipped_predictor, pred.preprocessed, r, steps=10)
    assert np.isfinite(di["deletion_auc"]) and np.isfinite(di["insertion_auc"])
