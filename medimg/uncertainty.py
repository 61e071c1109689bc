"""Test-time augmentation (TTA) and the uncertainty it measures.

A prediction that flips when the image is shifted by a few pixels, zoomed by 5 % or mirrored (where mirroring
is anatomically harmless) is not one to trust. :func:`tta_probabilities` runs the model on a small, fixed set
of such views of the *same* normalised input in one batch; :class:`Uncertainty` summarises their spread:
per-class standard deviation, predictive entropy of the mean, the mutual information between prediction and
view (the epistemic part; Depeweg et al. 2018, as used for MC dropout by Gal & Ghahramani 2016) and the
fraction of views that agree with the reported label.

The views are chosen per modality and stored in the spec (``ModelSpec.tta``): radiographs are never mirrored
(the heart is on the left), microscopy uses the 8 exact dihedral views (a cell has no up), ultrasound and MRI
add a horizontal flip. Zoom and shift views fill uncovered pixels with the normalised value of black, as
padding does in preprocessing.

Why TTA and not MC dropout: the shipped ResNets have no dropout layers, and switching dropout on in a model
shared by concurrent sessions would mutate it (see :mod:`medimg.predict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VIEWS", "VIEWS_BY_MODALITY", "views_for_modality", "apply_view", "tta_logits", "Uncertainty", "summarise"]

#: Names of the supported views.
VIEWS = ("identity", "hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "antitranspose",
         "zoom_in", "zoom_out", "shift_left", "shift_right", "shift_up", "shift_down")

VIEWS_BY_MODALITY = {
    "radiograph": ("identity", "zoom_in", "zoom_out", "shift_left", "shift_right", "shift_up", "shift_down"),
    "ultrasound": ("identity", "hflip", "zoom_in", "zoom_out", "shift_left", "shift_right"),
    "mri": ("identity", "hflip", "zoom_in", "zoom_out", "shift_left", "shift_right"),
    "microscopy": ("identity", "hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "antitranspose"),
}

#: Relative zoom and shift of the geometric views (5 % and 4 % of the side).
ZOOM, SHIFT = 0.05, 0.04


def views_for_modality(modality: str) -> tuple[str, ...]:
    """The TTA views used for a training modality.

    Parameters
    ----------
    modality : {"radiograph", "ultrasound", "mri", "microscopy"}

    Returns
    -------
    tuple of str
        Names from :data:`VIEWS`, ``"identity"`` first.

    Raises
    ------
    ValueError
        Unknown modality.
    """
    try:
        return VIEWS_BY_MODALITY[modality]
    except KeyError as err:
        raise ValueError(f"unknown modality {modality!r}; use one of {sorted(VIEWS_BY_MODALITY)}") from err


def _affine(x: torch.Tensor, scale: float, dx: float, dy: float, fill: torch.Tensor) -> torch.Tensor:
    """Zoom by ``scale`` about the centre and shift by (dx, dy) (fractions of the side), bilinear."""
    n = x.shape[0]
    theta = torch.tensor([[1.0 / scale, 0.0, -2.0 * dx], [0.0, 1.0 / scale, -2.0 * dy]], dtype=x.dtype,
                         device=x.device).expand(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # sample x - fill so that outside pixels (zeros) become exactly `fill` again
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def apply_view(x: torch.Tensor, view: str, fill: torch.Tensor | Sequence[float] = 0.0) -> torch.Tensor:
    """One TTA view of a batch of normalised model inputs.

    Parameters
    ----------
    x : (N, C, H, W) float tensor
        Normalised model inputs.
    view : str
        A name from :data:`VIEWS`. Transposes and 90-degree rotations need H == W.
    fill : float, sequence of C floats, or (1, C, 1, 1) tensor
        Value of uncovered pixels (the normalised value of black: ``-mean / std`` per channel).

    Returns
    -------
    (N, C, H, W) tensor, same dtype and device

    Raises
    ------
    ValueError
        Unknown view, or a rotation/transpose of a non-square input.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown TTA view {view!r}; known: {', '.join(VIEWS)}")
    if view in ("rot90", "rot270", "transpose", "antitranspose") and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"view {view!r} needs a square input, got {tuple(x.shape[-2:])}")
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    exact = {
        "identity": lambda t: t,
        "hflip": lambda t: t.flip(-1),
        "vflip": lambda t: t.flip(-2),
        "rot90": lambda t: t.rot90(1, (-2, -1)),
        "rot180": lambda t: t.rot90(2, (-2, -1)),
        "rot270": lambda t: t.rot90(3, (-2, -1)),
        "transpose": lambda t: t.transpose(-2, -1),
        "antitranspose": lambda t: t.rot90(2, (-2, -1)).transpose(-2, -1),
    }
    if view in exact:
        return exact[view](x)
    scale, dx, dy = {"zoom_in": (1 + ZOOM, 0, 0), "zoom_out": (1 - ZOOM, 0, 0), "shift_left": (1, -SHIFT, 0),
                     "shift_right": (1, SHIFT, 0), "shift_up": (1, 0, -SHIFT), "shift_down": (1, 0, SHIFT)}[view]
    return _affine(x, scale, dx, dy, fill_t)


@torch.inference_mode()
def tta_logits(model: nn.Module, x: torch.Tensor, views: Sequence[str], fill: Sequence[float] | torch.Tensor,
               batch_size: int = 256) -> torch.Tensor:
    """Logits of every view of every input.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; not modified (no hooks, no mode switch).
    x : (N, C, H, W) float32 tensor on the model's device
        Normalised model inputs.
    views : sequence of str
        Names from :data:`VIEWS`.
    fill : sequence of C floats or tensor
        Normalised value of black (see :func:`apply_view`).
    batch_size : int
        Images per forward pass (all views of a chunk of inputs go together).

    Returns
    -------
    (V, N, K) float32 tensor on the CPU
    """
    chunk = max(1, batch_size // max(len(views), 1))
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        batch = torch.cat([apply_view(xb, v, fill) for v in views])  # (V*n, C, H, W)
        out.append(model(batch).float().cpu().reshape(len(views), len(xb), -1))
    return torch.cat(out, dim=1)


@dataclass(frozen=True)
class Uncertainty:
    """Spread of one image's calibrated probabilities over TTA views.

    Attributes
    ----------
    method : str
        ``"tta"``.
    views : tuple of str
    view_probs : (V, K) float64 ndarray
        Calibrated probabilities of each view.
    mean_probs : (K,) float64 ndarray
        Their mean (the TTA prediction).
    std : (K,) float64 ndarray
        Standard deviation over views, per class, in probability units [0, 0.5].
    entropy : float
        Predictive entropy of ``mean_probs`` divided by ``log K``: 0 (certain) .. 1 (uniform).
    mutual_information : float
        Entropy of the mean minus mean entropy of the views, divided by ``log K`` (0 when all views agree).
    agreement : float
        Fraction of views whose argmax equals ``label_index``, in [0, 1].
    label_index : int
        The label the agreement is measured against (the reported prediction).
    """

    method: str
    views: tuple[str, ...]
    view_probs: np.ndarray
    mean_probs: np.ndarray
    std: np.ndarray
    entropy: float
    mutual_information: float
    agreement: float
    label_index: int

    @property
    def max_std(self) -> float:
        """Largest per-class standard deviation (probability units)."""
        return float(self.std.max())

    def is_unstable(self, min_agreement: float = 0.75, max_std: float = 0.15) -> bool:
        """True when fewer than ``min_agreement`` of the views agree or some class's probability moves by more
        than ``max_std`` (one standard deviation) between views."""
        return self.agreement < min_agreement or self.max_std > max_std

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary (no per-view arrays)."""
        return {"method": self.method, "views": list(self.views), "agreement": round(self.agreement, 4),
                "max_std": round(self.max_std, 4), "entropy": round(self.entropy, 4),
                "mutual_information": round(self.mutual_information, 4),
                "mean_probs": [round(float(p), 6) for p in self.mean_probs]}


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-1)


def summarise(view_probs: np.ndarray, views: Sequence[str], label_index: int) -> Uncertainty:
    """Build an :class:`Uncertainty` from per-view calibrated probabilities.

    Parameters
    ----------
    view_probs : (V, K) float ndarray
        Rows sum to 1.
    views : sequence of V str
    label_index : int
        The reported label (agreement is measured against it).

    Raises
    ------
    ValueError
        Shapes disagree or fewer than one view.
    """
    p = np.asarray(view_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(views) or p.shape[0] < 1:
        raise ValueError(f"view_probs must be (V, K) with V = {len(views)} views, got {p.shape}")
    k = p.shape[1]
    norm = math.log(k)
    mean = p.mean(axis=0)
    h_mean = float(_entropy(mean))
    mi = max(0.0, h_mean - float(_entropy(p).mean()))
    agree = float((p.argmax(axis=1) == label_index).mean())
    return Uncertainty("tta", tuple(views), p, mean, p.std(axis=0), h_mean / norm, mi / norm, agree,
                       int(label_index))
