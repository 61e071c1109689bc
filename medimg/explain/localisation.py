"""Does the heat map fall on the lesion? Localisation scores of saliency maps against expert masks.

Two standard scores, computed in the model-input frame (the mask goes through the model's own preprocessing,
so padding and resizing match the map exactly):

- **pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018): a hit when
  the map's maximum lies inside the mask (dilated by ``tolerance`` pixels, 15 px at 224 px in the paper).
- **energy inside the mask** (the energy-based pointing game of Wang et al., "Score-CAM", CVPRW 2020): the
  share of the map's total (non-negative) mass inside the mask.

Both are compared with what a map carrying no information scores: a uniform map puts ``mask area / image
area`` of its energy in the mask, and a random maximum hits with that same probability. A ratio above 1 means
the map finds the lesion better than chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["pointing_hit", "energy_inside", "LocalisationSummary", "summarise_localisation", "mask_to_input"]


def _check(heatmap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(heatmap, dtype=np.float64)
    m = np.asarray(mask) > 0.5
    if h.ndim != 2 or h.shape != m.shape:
        raise ValueError(f"heat map {h.shape} and mask {m.shape} must be 2-D arrays of the same shape")
    if not np.isfinite(h).all():
        raise ValueError("heat map holds non-finite values")
    return h, m


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> bool:
    """Whether the heat map's maximum lies inside the (dilated) mask.

    Parameters
    ----------
    heatmap : (H, W) float ndarray
        Saliency map (any scale).
    mask : (H, W) ndarray
        Lesion mask; values > 0.5 are inside.
    tolerance : int
        Dilate the mask by this many pixels first (Zhang et al. 2018 use 15 px at 224 px).

    Returns
    -------
    bool
        Ties for the maximum count as a hit when any tied pixel is inside; a constant map (e.g. an empty CAM)
        points nowhere and is a miss.

    Raises
    ------
    ValueError
        Shapes differ, not 2-D, non-finite values, or an empty mask.
    """
    h, m = _check(heatmap, mask)
    if not m.any():
        raise ValueError("the mask is empty: there is no lesion to point at")
    if h.max() <= h.min():
        return False
    if tolerance > 0:
        m = ndimage.binary_dilation(m, iterations=int(tolerance))
    top = h >= h.max()
    return bool((top & m).any())


def energy_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's non-negative mass inside the mask, in [0, 1].

    Parameters
    ----------
    heatmap : (H, W) float ndarray
        Negative values are clipped to 0.
    mask : (H, W) ndarray
        Values > 0.5 are inside.

    Returns
    -------
    float
        ``sum(h * mask) / sum(h)``; NaN when the map is all zero.

    Raises
    ------
    ValueError
        Shapes differ, not 2-D or non-finite values.
    """
    h, m = _check(heatmap, mask)
    h = np.clip(h, 0, None)
    total = h.sum()
    return float(h[m].sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class LocalisationSummary:
    """Localisation of one method over a set of images with masks.

    Attributes
    ----------
    n : int
        Images scored (non-empty masks).
    pointing_accuracy : float
        Share of hits, in [0, 1].
    energy_inside : float
        Mean share of map energy inside the mask, in [0, 1].
    chance : float
        Mean mask area fraction: what an uninformative map scores on both measures.
    """

    n: int
    pointing_accuracy: float
    energy_inside: float
    chance: float

    @property
    def energy_ratio(self) -> float:
        """``energy_inside / chance`` (1 = no better than a uniform map)."""
        return self.energy_inside / self.chance if self.chance > 0 else float("nan")

    @property
    def pointing_ratio(self) -> float:
        """``pointing_accuracy / chance`` (1 = no better than a random point)."""
        return self.pointing_accuracy / self.chance if self.chance > 0 else float("nan")


def summarise_localisation(heatmaps: Sequence[np.ndarray] | np.ndarray, masks: Sequence[np.ndarray] | np.ndarray,
                           tolerance: int = 0) -> LocalisationSummary:
    """Pointing game and energy inside the mask over many (map, mask) pairs; images with empty masks are skipped.

    Parameters
    ----------
    heatmaps : (N, H, W) float array or sequence of (H, W)
    masks : (N, H, W) array or sequence of (H, W)
    tolerance : int
        Dilation of the masks for the pointing game, in pixels.

    Raises
    ------
    ValueError
        Different numbers of maps and masks, or no non-empty mask.
    """
    if len(heatmaps) != len(masks):
        raise ValueError(f"{len(heatmaps)} heat maps but {len(masks)} masks")
    hits, energy, area = [], [], []
    for h, m in zip(heatmaps, masks, strict=True):
        mb = np.asarray(m) > 0.5
        if not mb.any():
            continue
        hits.append(pointing_hit(h, mb, tolerance))
        energy.append(energy_inside(h, mb))
        area.append(float(mb.mean()))
    if not hits:
        raise ValueError("no image has a non-empty mask")
    return LocalisationSummary(len(hits), float(np.mean(hits)), float(np.nanmean(energy)), float(np.mean(area)))


def mask_to_input(mask: np.ndarray, config: object) -> np.ndarray:
    """Bring a lesion mask (original image frame) into the model-input frame with the model's preprocessing.

    Parameters
    ----------
    mask : (H, W) ndarray
        Non-zero inside the lesion, in the original image's pixel grid.
    config : medimg.spec.PreprocessConfig
        The model's preprocessing (geometry and input size are what matter).

    Returns
    -------
    (rows, cols) bool ndarray
        ``config.input_size``; True where the resampled mask is above one half.
    """
    from medimg.catalog import image_from_array
    from medimg.preprocess import run as preprocess_run
    from medimg.spec import PreprocessConfig

    if not isinstance(config, PreprocessConfig):
        raise TypeError("config must be a medimg.spec.PreprocessConfig")
    m = (np.asarray(mask) > 0).astype(np.float32) * 255.0
    plain = PreprocessConfig(input_size=config.input_size, in_chans=1, geometry=config.geometry)
    return preprocess_run(image_from_array(m), plain).image[..., 0] > 0.5
