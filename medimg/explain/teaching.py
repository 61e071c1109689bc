"""Looking inside the CNN, for educators: layer names, first-layer filters, feature maps, occlusion maps.

Nothing here hooks or changes the shared model: feature maps are read from a borrowed private replica,
occlusion runs plain batched predictions (``torch.inference_mode``, no hooks).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.errors import ModelInputError
from medimg.explain.maps import _model_input, _resolve_target
from medimg.explain.replicas import ExplainError, as_model, replica_pool, resolve_layer

__all__ = ["layer_names", "first_layer_filters", "feature_maps", "occlusion"]


def layer_names(model: Any) -> list[str]:
    """Layers worth looking at, in definition order: every ``Conv2d`` plus top-level blocks that contain one.

    Parameters
    ----------
    model : Predictor or torch.nn.Module

    Returns
    -------
    list of str
        Dotted module paths usable with :func:`feature_maps` and as a CAM ``layer`` (e.g. ResNet-18:
        ``"conv1", "layer1", "layer1.0.conv1", ..., "layer4"``).
    """
    m = as_model(model)
    out = []
    for name, mod in m.named_modules():
        if not name:
            continue
        if isinstance(mod, nn.Conv2d):
            out.append(name)
        elif name.count(".") == 0 and any(isinstance(c, nn.Conv2d) for c in mod.modules()):
            out.append(name)
    return out


def first_layer_filters(model: Any) -> np.ndarray:
    """Weights of the first convolution, one 2-D kernel per filter.

    Parameters
    ----------
    model : Predictor or torch.nn.Module

    Returns
    -------
    (F, kh, kw) float32 ndarray
        Signed raw weights, averaged over the input channels (1 channel for grayscale models); a copy.

    Raises
    ------
    ExplainError
        The network has no ``Conv2d``.
    """
    m = as_model(model)
    conv = next((mod for mod in m.modules() if isinstance(mod, nn.Conv2d)), None)
    if conv is None:
        raise ExplainError("This network has no 2-D convolution to show.")
    w = conv.weight.detach().to("cpu", torch.float32).numpy()  # (F, C, kh, kw)
    return np.ascontiguousarray(w.mean(axis=1), dtype=np.float32)


def feature_maps(predictor: Any, preprocessed: Any, layer: str, timeout: float | None = None) -> np.ndarray:
    """Activations of one layer for one image, read on a private replica.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input.
    layer : str
        Dotted module path (see :func:`layer_names`).
    timeout : float, optional
        Seconds to wait for a free replica.

    Returns
    -------
    (C, h, w) float32 ndarray
        Unscaled activations (after the module; e.g. a ReLU block gives values >= 0).

    Raises
    ------
    SpecError
        ``layer`` is not a module of the network.
    ExplainError
        The layer's output is not (N, C, h, w).
    BusyError
        No replica became free in time.
    """
    x = torch.from_numpy(np.array(_model_input(preprocessed), dtype=np.float32))[None]
    got: list[torch.Tensor] = []
    kwargs = {} if timeout is None else {"timeout": timeout}
    with replica_pool(predictor).borrow(**kwargs) as replica:
        mod = resolve_layer(replica, layer)
        handle = mod.register_forward_hook(lambda _m, _i, out: got.append(out.detach()))
        try:
            with torch.inference_mode():
                replica(x.to(next(replica.parameters()).device))
        finally:
            handle.remove()
    if not got or not isinstance(got[0], torch.Tensor) or got[0].ndim != 4:
        raise ExplainError(f"Layer {layer!r} does not output (N, C, h, w) feature maps.")
    return np.ascontiguousarray(got[0][0].float().cpu().numpy(), dtype=np.float32)


def occlusion(predictor: Any, preprocessed: Any, target: int | str | None = None, patch: int = 16,
              stride: int = 8, baseline: float = 0.0, batch_size: int = 64) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): how much the class probability drops when a patch is hidden.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Plain batched predictions on the shared model (no hooks).
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input; not modified.
    target : int or str, optional
        Class; None = the predicted class.
    patch, stride : int
        Square patch side and step, in model-input pixels (the last row/column of patches touches the edge).
    baseline : float
        Value written into the patch, in *normalised* units: 0 is the spec's mean intensity (a mid-gray).
    batch_size : int
        Occluded images per forward pass.

    Returns
    -------
    (H, W) float32 ndarray in [-1, 1]
        Mean over the patches covering each pixel of ``p(target | image) - p(target | occluded image)``
        (calibrated probabilities). Positive: hiding the pixel lowers the probability (evidence for the class).

    Raises
    ------
    ExplainError
        ``patch`` or ``stride`` outside 1 .. input size, or unknown class.

    References
    ----------
    .. [1] Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """
    x = _model_input(preprocessed)
    if x.ndim != 3:
        raise ModelInputError(f"Expected one (C, H, W) model input; got shape {x.shape}.")
    _, h, w = x.shape
    if not (1 <= patch <= min(h, w)) or stride < 1:
        raise ExplainError(f"patch must be in 1..{min(h, w)} and stride >= 1; got patch={patch}, stride={stride}.")
    p0 = predictor.predict_proba(x[None])[0]
    t = _resolve_target(target, predictor.spec.labels)
    if t is None:
        t = int(predictor.decide(p0))

    def starts(n: int) -> list[int]:
        s = list(range(0, n - patch + 1, stride))
        return s if s[-1] == n - patch else [*s, n - patch]

    boxes = [(r, cc) for r in starts(h) for cc in starts(w)]
    heat = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for j, (r, cc) in enumerate(chunk):
            batch[j, :, r : r + patch, cc : cc + patch] = baseline
        drop = p0[t] - predictor.predict_proba(batch)[:, t]
        for j, (r, cc) in enumerate(chunk):
            heat[r : r + patch, cc : cc + patch] += drop[j]
            count[r : r + patch, cc : cc + patch] += 1
    return (heat / np.maximum(count, 1)).astype(np.float32)
