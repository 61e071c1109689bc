"""Lesion-mask supervision: an auxiliary loss that asks the features Grad-CAM reads to mark the expert's lesion.

A classifier trained on labels alone may use any pixel that predicts the label (a caliper mark, the image
frame). When a data set comes with expert lesion masks (BUSI), a small auxiliary head on the explained layer
(the spec's ``cam_layer``) predicts the mask from that layer's feature map, and its loss is added to the
classification loss: multi-task learning with segmentation as the auxiliary task (Caruana, "Multitask
Learning", Mach Learn 28, 1997; for breast ultrasound e.g. Vakanski et al., "Attention-enriched deep learning
model for breast tumor segmentation in ultrasound images", Ultrasound Med Biol 46, 2020, and Zhou et al.,
"Multi-task learning for segmentation and classification of tumors in 3D automated breast ultrasound images",
Med Image Anal 70, 2021).

Only training changes: the head is not part of the network that is saved, served and explained (the shipped
weights and their architecture are those of the plain classifier). The target is the mask area-averaged onto
the feature map's grid (a soft target: the share of each cell inside the lesion); images without a lesion have
an all-zero target. The masks go through the model's own preprocessing (:func:`medimg.explain.localisation.
mask_to_input`) and take each training image's geometric augmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.catalog import read_manifest
from medimg.errors import MedimgError, SpecError
from medimg.explain.localisation import mask_to_input
from medimg.io import load_image
from medimg.spec import PreprocessConfig

__all__ = ["MaskHead", "load_masks", "mask_loss", "FeatureTap"]


def load_masks(folder: str | Path, ids: list[str], config: PreprocessConfig,
               rows: list[dict[str, str]] | None = None) -> torch.Tensor:
    """The expert masks of a split's images, in the model-input frame.

    Parameters
    ----------
    folder : path
        Data set folder whose ``MANIFEST.csv`` has a ``mask`` column (a path relative to ``folder``, empty for
        an image without a lesion).
    ids : list of str
        The split's image ids (manifest ``path`` values), in the split's order.
    config : PreprocessConfig
        The model's preprocessing (geometry and input size place the mask).
    rows : list of dict, optional
        The manifest's rows; read from ``folder`` by default.

    Returns
    -------
    (N, 1, H, W) float32 tensor in {0, 1}
        ``H, W = config.input_size``; 1 inside the lesion.

    Raises
    ------
    SpecError
        The manifest has no ``mask`` column, or an id is not in it.
    MedimgError
        A mask file cannot be read (the message names it).
    """
    folder = Path(folder)
    rows = rows if rows is not None else read_manifest(folder)
    if not rows or "mask" not in rows[0]:
        raise SpecError(f"{folder.name}: the manifest has no 'mask' column, so there are no lesion masks to "
                        "supervise with; train without --mask-weight")
    by_path = {r["path"]: r.get("mask", "") for r in rows}
    h, w = config.input_size
    out = np.zeros((len(ids), 1, h, w), dtype=np.float32)
    for i, image_id in enumerate(ids):
        if image_id not in by_path:
            raise SpecError(f"{image_id}: not in {folder.name}'s manifest")
        rel = by_path[image_id]
        if not rel:
            continue
        try:
            pixels = load_image(folder / rel).pixels
        except MedimgError as err:
            raise type(err)(f"{rel}: {err}") from err
        if pixels.ndim == 3:
            pixels = pixels.max(axis=-1)
        out[i, 0] = mask_to_input(pixels, config)
    return torch.from_numpy(out)


class FeatureTap:
    """Keeps the output of one named module of a network at every forward pass (a forward hook).

    Parameters
    ----------
    net : torch.nn.Module
    layer : str
        Dotted module name, e.g. ``"features.18"`` (the spec's ``cam_layer``).

    Raises
    ------
    SpecError
        No module of that name.
    """

    def __init__(self, net: nn.Module, layer: str) -> None:
        modules = dict(net.named_modules())
        if layer not in modules:
            raise SpecError(f"the network has no layer {layer!r} to supervise with masks")
        self.output: torch.Tensor | None = None
        self._handle = modules[layer].register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        self.output = output

    def remove(self) -> None:
        """Detach the hook (the network is then as before)."""
        self._handle.remove()


class MaskHead(nn.Module):
    """A 1 x 1 convolution from a feature map to one lesion logit per cell.

    Parameters
    ----------
    channels : int
        Channels of the supervised feature map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> (B, 1, h, w) lesion logits."""
        return self.conv(features)


def mask_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image binary cross-entropy between lesion logits and the masks area-averaged onto their grid.

    Parameters
    ----------
    logits : (B, 1, h, w) tensor
        :class:`MaskHead` output on the feature map's grid.
    masks : (B, 1, H, W) tensor in [0, 1]
        Masks in the model-input frame (``H, W`` multiples of ``h, w`` for an exact average; otherwise
        ``adaptive_avg_pool2d``'s overlapping cells).

    Returns
    -------
    (B,) float32 tensor
        Mean over the cells of each image; sum and normalise by the global batch as the classification loss is.
    """
    target = nn.functional.adaptive_avg_pool2d(masks.float(), logits.shape[-2:])
    per_cell = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return per_cell.flatten(1).mean(1)
