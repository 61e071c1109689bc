"""Localisation scores of saliency maps against lesion masks (pointing game, energy inside)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.explain.localisation import energy_inside, mask_to_input, pointing_hit, summarise_localisation
from medimg.spec import PreprocessConfig


def _mask(h: int = 40, w: int = 40, box: tuple[int, int, int, int] = (10, 20, 10, 20)) -> np.ndarray:
    m = np.zeros((h, w), bool)
    r0, r1, c0, c1 = box
    m[r0:r1, c0:c1] = True
    return m


def test_pointing_hit_inside_outside_and_tolerance() -> None:
    m = _mask()
    h = np.zeros((40, 40))
    h[15, 15] = 1.0
    assert pointing_hit(h, m)
    h2 = np.zeros((40, 40))
    h2[15, 22] = 1.0  # three pixels right of the box (last column inside: 19)
    assert not pointing_hit(h2, m)
    assert pointing_hit(h2, m, tolerance=3) and not pointing_hit(h2, m, tolerance=2)
    with pytest.raises(ValueError, match="empty"):
        pointing_hit(h, np.zeros((40, 40)))
    with pytest.raises(ValueError, match="same shape"):
        pointing_hit(h, np.ones((20, 20)))


def test_energy_inside_is_mass_share_and_uniform_map_scores_area() -> None:
    m = _mask()
    assert energy_inside(np.ones((40, 40)), m) == pytest.approx(m.mean())
    h = np.zeros((40, 40))
    h[m] = 3.0
    h[0, 0] = 1.0  # 1 of 301 units outside
    assert energy_inside(h, m) == pytest.approx(300 / 301)
    neg = -np.ones((40, 40))
    neg[m] = 1.0  # negative evidence is clipped, not subtracted
    assert energy_inside(neg, m) == pytest.approx(1.0)
    assert np.isnan(energy_inside(np.zeros((40, 40)), m))


def test_summary_ratios_against_chance_and_empty_masks_skipped() -> None:
    rng = np.random.default_rng(0)
    masks, good, noise = [], [], []
    for _ in range(30):
        r, c = rng.integers(5, 30, 2)
        m = _mask(box=(r, r + 8, c, c + 8))
        masks.append(m)
        g = rng.random((40, 40)) * 0.2
        g[m] += 1.0
        good.append(g)
        noise.append(rng.random((40, 40)))
    masks.append(np.zeros((40, 40), bool))
    good.append(np.ones((40, 40)))
    noise.append(np.ones((40, 40)))
    s_good = summarise_localisation(good, masks)
    s_noise = summarise_localisation(noise, masks)
    assert s_good.n == 30 and s_good.pointing_accuracy == 1.0 and s_good.energy_ratio > 5
    assert s_noise.energy_ratio == pytest.approx(1.0, abs=0.1) and s_noise.pointing_accuracy < 0.3
    assert s_good.chance == pytest.approx(64 / 1600)
    with pytest.raises(ValueError):
        summarise_localisation(good[:2], masks[:3])


def test_mask_follows_the_models_padding_geometry() -> None:
    """A 100 x 200 image padded into 64 x 64: the mask's left half lands in the middle band, rows 16-48."""
    m = np.zeros((100, 200))
    m[:, :100] = 1
    out = mask_to_input(m, PreprocessConfig(input_size=(64, 64), in_chans=1, geometry="pad"))
    assert out.shape == (64, 64) and out.dtype == bool
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert 15 <= rows.min() <= 17 and 46 <= rows.max() <= 48
    assert cols.min() == 0 and 30 <= cols.max() <= 33
    stretched = mask_to_input(m, PreprocessConfig(input_size=(64, 64), in_chans=1, geometry="stretch"))
    assert stretched[:, :31].all() and not stretched[:, 33:].any()
