"""Test-time augmentation views and the uncertainty the Predictor reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medimg.io.image import MedicalImage, Window
from medimg.predict import Predictor
from medimg.spec import ModelSpec, PreprocessConfig
from medimg.uncertainty import SHIFT, VIEWS, apply_view, summarise, tta_logits, views_for_modality


def _img(n: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, n, n, generator=g)


@pytest.mark.parametrize("view,times", [("hflip", 2), ("vflip", 2), ("rot90", 4), ("rot180", 2), ("transpose", 2),
                                        ("antitranspose", 2)])
def test_exact_views_are_involutions_or_cycles(view: str, times: int) -> None:
    x = _img()
    y = x
    for _ in range(times):
        y = apply_view(y, view)
    assert torch.equal(y, x)
    assert not torch.equal(apply_view(x, view), x)


def test_antitranspose_is_reflection_about_the_other_diagonal() -> None:
    x = _img(8)
    y = apply_view(x, "antitranspose")
    n = 8
    for i, j in [(0, 0), (1, 5), (7, 2)]:
        assert y[0, 0, i, j] == x[0, 0, n - 1 - j, n - 1 - i]


def test_shift_right_moves_content_right_and_fills_with_black() -> None:
    n = 50
    x = torch.full((1, 1, n, n), -2.0)  # normalised black = -mean/std = -2 for mean .5, std .25
    x[0, 0, 20:30, 20:30] = 2.0
    y = apply_view(x, "shift_right", fill=[-2.0])
    cols = (y[0, 0] > 0).any(dim=0).nonzero().flatten()
    expected = round(SHIFT * n)
    assert abs(int(cols.min()) - (20 + expected)) <= 1
    assert torch.allclose(y[0, 0, :, :expected - 1], torch.full((n, expected - 1), -2.0), atol=1e-5)


def test_zoom_out_leaves_a_black_border_zoom_in_does_not() -> None:
    x = torch.ones(1, 1, 40, 40)
    out = apply_view(x, "zoom_out", fill=[-2.0])
    assert out[0, 0, 0, 0] == pytest.approx(-2.0, abs=1e-5)
    assert out[0, 0, 20, 20] == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(apply_view(x, "zoom_in", fill=[-2.0]), x, atol=1e-5)


def test_views_per_modality_respect_anatomy() -> None:
    radiograph = views_for_modality("radiograph")
    assert radiograph[0] == "identity"
    assert not any("flip" in v or "rot" in v or "transpose" in v for v in radiograph)  # heart stays left
    assert set(views_for_modality("microscopy")) >= {"hflip", "vflip", "rot90", "rot270"}
    assert all(v in VIEWS for m in ("radiograph", "ultrasound", "mri", "microscopy") for v in views_for_modality(m))
    with pytest.raises(ValueError, match="unknown modality"):
        views_for_modality("pet")
    with pytest.raises(ValueError, match="unknown TTA view"):
        apply_view(_img(), "mirror")
    with pytest.raises(ValueError, match="square"):
        apply_view(torch.zeros(1, 1, 8, 10), "rot90")


def test_summarise_agreeing_and_disagreeing_views() -> None:
    same = np.tile([[0.9, 0.1]], (5, 1))
    u = summarise(same, ["identity"] * 5, 0)
    assert u.agreement == 1.0 and u.max_std == pytest.approx(0.0) and u.mutual_information == pytest.approx(0.0)
    assert 0 < u.entropy < 1 and not u.is_unstable()
    mixed = np.array([[0.9, 0.1], [0.2, 0.8], [0.85, 0.15], [0.1, 0.9]])
    v = summarise(mixed, ["a", "b", "c", "d"], 0)
    assert v.agreement == 0.5 and v.is_unstable() and v.mutual_information > 0.1
    np.testing.assert_allclose(v.mean_probs, mixed.mean(0))
    with pytest.raises(ValueError):
        summarise(mixed, ["a"], 0)


class _Pooled(nn.Module):
    """Logits from the global mean: exactly invariant to flips and 90-degree rotations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1) * 4


class _LeftHalf(nn.Module):
    """Logits from the left half only: a horizontal flip changes the answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        d = x[..., : w // 2].mean(dim=(1, 2, 3)) - x[..., w // 2 :].mean(dim=(1, 2, 3))
        return torch.stack([d, -d], dim=1) * 10


def _spec(tta: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(name="t", title="t", architecture="smallcnn", labels=("a", "b"),
                     preprocess=PreprocessConfig(input_size=(32, 32), in_chans=1), temperature=1.0, tta=tta)


def _image(left_bright: bool) -> MedicalImage:
    arr = np.zeros((32, 32), np.float32)
    arr[:, :16] = 200.0 if left_bright else 20.0
    arr[:, 16:] = 20.0 if left_bright else 200.0
    return MedicalImage(pixels=arr, format="png", photometric="MONOCHROME2",
                        windows=(Window(127.5, 255.0, "stored range", "LINEAR_EXACT"),), units="8-bit")


def test_predictor_reports_tta_spread_and_keeps_single_view_probs() -> None:
    views = views_for_modality("microscopy")
    stable = Predictor(_Pooled(), _spec(views), "cpu").predict(_image(True), tta=True)
    assert stable.uncertainty is not None and stable.uncertainty.views == views
    assert stable.uncertainty.agreement == 1.0 and stable.uncertainty.max_std < 1e-6
    np.testing.assert_allclose(stable.uncertainty.mean_probs, stable.probs, atol=1e-6)

    flipping = Predictor(_LeftHalf(), _spec(("identity", "hflip")), "cpu").predict(_image(True), tta=True)
    u = flipping.uncertainty
    assert u is not None and u.agreement == 0.5 and u.is_unstable()
    assert flipping.label == "a" and flipping.probs[0] > 0.99  # the reported probs are the identity view's
    assert Predictor(_LeftHalf(), _spec(("identity", "hflip")), "cpu").predict(_image(True), tta=False).uncertainty is None
    assert Predictor(_LeftHalf(), _spec(()), "cpu").predict(_image(True), tta=True).uncertainty is None
    # TTA costs a batch of views: it runs only when asked for (where its answer is shown)
    assert Predictor(_LeftHalf(), _spec(("identity", "hflip")), "cpu").predict(_image(True)).uncertainty is None


def test_tta_logits_batched_equals_per_view_loop() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(5, 1, 24, 24)
    views = views_for_modality("ultrasound")
    got = tta_logits(model, x, views, [-2.0], batch_size=8)  # chunks of 1 image x 6 views
    with torch.no_grad():
        ref = torch.stack([model(apply_view(x, v, [-2.0])) for v in views])
    assert got.shape == (len(views), 5, 3)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not model.training
