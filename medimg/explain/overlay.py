"""Colour overlays of heat maps on display images."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from medimg.explain.replicas import ExplainError

__all__ = ["overlay", "colormap_lut"]


def _jet(n: int = 256) -> np.ndarray:
    x = np.linspace(0.0, 1.0, n)
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return np.stack([r, g, b], axis=1).astype(np.float32)


@lru_cache(maxsize=16)
def colormap_lut(name: str = "jet") -> np.ndarray:
    """(256, 3) float32 RGB lookup table in [0, 1] of a matplotlib colormap (a numpy jet without matplotlib).

    Raises
    ------
    ExplainError
        Unknown colormap name.
    """
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib comes with grad-cam
        if name == "jet":
            return _jet()
        raise ExplainError(f"Colormap {name!r} needs matplotlib; use 'jet'.") from None
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError as err:
        raise ExplainError(f"Unknown colormap {name!r} (e.g. 'jet', 'inferno', 'viridis', 'turbo').") from err
    lut = np.asarray(cmap(np.linspace(0.0, 1.0, 256))[:, :3], dtype=np.float32)
    lut.setflags(write=False)
    return lut


def overlay(display: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped heat map over a display image.

    Parameters
    ----------
    display : (H, W), (H, W, 1) or (H, W, 3) float ndarray in [0, 1]
        E.g. ``MedicalImage.display()`` or ``Preprocessed.image``; not modified.
    heatmap : (H, W) float ndarray in [0, 1]
        Same rows/columns as ``display`` (use ``CamResult.heatmap_original`` for the original image).
    alpha : float in [0, 1]
        Weight of the colour map: ``(1 - alpha) * display + alpha * colormap(heatmap)``.
    colormap : str
        A matplotlib colormap name (``"jet"``, ``"inferno"``, ...).

    Returns
    -------
    (H, W, 3) float32 ndarray in [0, 1]

    Raises
    ------
    ExplainError
        Shapes differ, alpha outside [0, 1], or unknown colormap.
    """
    d = np.asarray(display, dtype=np.float32)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if not (d.ndim == 2 or (d.ndim == 3 and d.shape[2] == 3)):
        raise ExplainError(f"display must be (H, W) or (H, W, 3); got {d.shape}.")
    h = np.asarray(heatmap, dtype=np.float32)
    if h.shape != d.shape[:2]:
        raise ExplainError(f"heatmap {h.shape} and display {d.shape[:2]} differ in size; map the heat map to the "
                           "display grid first (CamResult.heatmap_original).")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ExplainError(f"alpha must be in [0, 1], got {alpha}.")
    idx = np.rint(np.clip(np.nan_to_num(h), 0.0, 1.0) * 255.0).astype(np.uint8)
    out = (colormap_lut(colormap) * np.float32(alpha))[idx]  # (H, W, 3) float32, a new array
    base = np.clip(d, 0.0, 1.0) * np.float32(1.0 - alpha)
    out += base[..., None] if base.ndim == 2 else base
    return np.clip(out, 0.0, 1.0, out=out)
