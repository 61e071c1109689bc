"""Checks for reviewers: is a saliency map faithful to the model (deletion/insertion), and does it depend on
the learned weights at all (model-parameter randomisation)?"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata
from torch import nn

from medimg.explain.maps import (
    CamResult,
    _model_input,
    _resolve_target,
    _scale,
    _softmax,
    cam,
    cam_layer_of,
    method_name,
    raw_maps,
)
from medimg.explain.replicas import ExplainError, as_model
from medimg.preprocess import normalise

__all__ = ["deletion_insertion", "randomization_sanity", "randomized_copy", "spearman"]


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def deletion_insertion(predictor: Any, preprocessed: Any, heatmap: np.ndarray | CamResult,
                       target: int | str | None = None, steps: int = 20, blur_sigma: float | None = None,
                       ) -> dict[str, Any]:
    """Deletion and insertion curves of a saliency map (Petsiuk et al. 2018, RISE).

    Pixels are ranked by the map (most salient first). *Deletion*: they are set to black (0 in [0, 1]) in that
    order and the class probability should fall fast (low AUC = faithful). *Insertion*: starting from a blurred
    copy they are restored in that order and the probability should rise fast (high AUC = faithful).

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Batched plain predictions (no hooks).
    preprocessed : Preprocessed
        Needs ``.image`` (H, W, C) float32 in [0, 1] at the model input size; not modified.
    heatmap : (H, W) float ndarray or CamResult
        The map to test, at the model input size.
    target : int or str, optional
        Class; default the CamResult's target, else the predicted class.
    steps : int
        Points on each curve after the start (``steps + 1`` in all).
    blur_sigma : float, optional
        Gaussian sigma (pixels) of the blurred image insertion starts from; default ``max(H, W) / 45``
        (5 px at 224 px).

    Returns
    -------
    dict
        ``deletion_auc``, ``insertion_auc``: float in [0, 1] (area under probability vs fraction of pixels);
        ``target``: int; ``curves``: ``fraction`` (steps + 1,), ``deletion`` and ``insertion`` probabilities
        (steps + 1,), float64.

    Raises
    ------
    ExplainError
        The map's size differs from the image's, ``steps`` < 1, or unknown class.

    References
    ----------
    .. [1] Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
       BMVC 2018.
    """
    if isinstance(heatmap, CamResult):
        if target is None:
            target = heatmap.target_index
        heatmap = heatmap.heatmap
    img = np.asarray(preprocessed.image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    h, w, _ = img.shape
    sal = np.asarray(heatmap, dtype=np.float64)
    if sal.shape != (h, w):
        raise ExplainError(f"heatmap {sal.shape} must match the model input size {(h, w)}.")
    if steps < 1:
        raise ExplainError(f"steps must be >= 1, got {steps}.")
    config = predictor.spec.preprocess
    t = _resolve_target(target, predictor.spec.labels)
    if t is None:
        t = int(predictor.decide(predictor.predict_proba(normalise(img, config)[None])[0]))
    order = np.argsort(-np.nan_to_num(sal).ravel(), kind="stable")
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    sigma = float(blur_sigma) if blur_sigma is not None else max(h, w) / 45.0
    blurred = np.stack([gaussian_filter(img[..., c], sigma) for c in range(img.shape[2])], axis=-1)
    dele, ins = [], []
    for k in counts:
        mask = np.zeros(h * w, dtype=bool)
        mask[order[:k]] = True
        mask = mask.reshape(h, w)
        d = img.copy()
        d[mask] = 0.0
        i = blurred.copy()
        i[mask] = img[mask]
        dele.append(normalise(d, config))
        ins.append(normalise(i, config))
    probs = predictor.predict_proba(np.stack(dele + ins))[:, t]
    frac = counts / float(h * w)
    pd, pi = probs[: steps + 1], probs[steps + 1 :]
    return {"deletion_auc": _trapezoid(pd, frac), "insertion_auc": _trapezoid(pi, frac), "target": t,
            "curves": {"fraction": frac, "deletion": pd, "insertion": pi}}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (average ranks for ties); 0.0 when either map is constant."""
    ra = rankdata(np.asarray(a, dtype=np.float64).ravel())
    rb = rankdata(np.asarray(b, dtype=np.float64).ravel())
    ra -= ra.mean()
    rb -= rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def _execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of parameterised leaf modules in the order they first run (hooks on a private copy only)."""
    order: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        if name and not list(mod.children()) and any(True for _ in mod.parameters(recurse=False)):
            handles.append(mod.register_forward_pre_hook(
                lambda _m, _i, n=name: None if n in order else order.append(n)))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hd in handles:
            hd.remove()
    return order


def randomized_copy(model: Any, layer: str, x: np.ndarray, mode: str = "cascading", seed: int = 0) -> nn.Module:
    """A private copy of ``model`` with its top layers' parameters randomised (Adebayo et al. 2018).

    Parameters
    ----------
    model : Predictor or torch.nn.Module
        Not changed (deep-copied).
    layer : str
        The CAM layer.
    x : (1, C, H, W) float32 ndarray
        An input, used once to find the order in which layers run.
    mode : {"cascading", "top"}
        ``cascading``: every parameterised layer from the logits down to and including ``layer``;
        ``top``: the logit layer only.
    seed : int

    Returns
    -------
    torch.nn.Module
        Eval mode, parameters frozen; each randomised tensor is redrawn from a normal distribution with the
        trained tensor's mean and standard deviation (scale kept, learned structure destroyed).
    """
    with torch.inference_mode(False), torch.no_grad():
        rep = copy.deepcopy(as_model(model)).eval()
    for p in rep.parameters():
        p.requires_grad_(False)
    device = next(rep.parameters()).device
    order = _execution_order(rep, torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device))
    if mode == "top":
        chosen = order[-1:]
    elif mode == "cascading":
        inside = [i for i, n in enumerate(order) if n == layer or n.startswith(layer + ".")]
        first = inside[0] if inside else len(order) - 1
        chosen = order[first:]
    else:
        raise ExplainError(f"Unknown randomisation mode {mode!r}; choose 'cascading' or 'top'.")
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name in chosen:
            for p in rep.get_submodule(name).parameters(recurse=False):
                mean = float(p.float().mean())
                std = float(p.float().std()) if p.numel() > 1 else 0.0
                std = std if std > 0 else 0.05
                new = torch.randn(p.shape, generator=g, dtype=torch.float32) * std + mean
                p.copy_(new.to(p.device, p.dtype))
    return rep


def randomization_sanity(predictor: Any, preprocessed: Any, method: str = "gradcam",
                         target: int | str | None = None, mode: str = "cascading", seed: int = 0) -> float:
    """Model-parameter randomisation test (Adebayo et al. 2018): similarity of the trained model's map and the
    map of the same network with randomised top layers.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Not changed: the randomised network is a separate private copy.
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input.
    method : str
        A CAM method (see :data:`medimg.explain.METHODS`).
    target : int or str, optional
        Class; default the trained model's prediction (the same class is explained on both networks).
    mode : {"cascading", "top"}
        See :func:`randomized_copy`.
    seed : int

    Returns
    -------
    float in [-1, 1]
        Spearman rank correlation of the two relative maps (0.0 if either is constant). A map that explains
        the *trained* model gives a low value; a value near 1 means the map does not depend on what was learned
        (it fails the sanity check).

    Raises
    ------
    SpecError, ExplainError, ModelInputError
        As in :func:`medimg.explain.cam`.

    References
    ----------
    .. [1] Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    m = method_name(method)
    trained = cam(predictor, preprocessed, target=target, method=m)
    x = _model_input(preprocessed)[None]
    layer = cam_layer_of(predictor.spec)
    rand = randomized_copy(predictor, layer, x, mode=mode, seed=seed)
    temperature = predictor.spec.temperature
    maps, _, _ = raw_maps(rand, layer, x, [trained.target_index], m,
                          lambda lg: int(predictor.decide(_softmax(lg, temperature))))
    return spearman(trained.heatmap, _scale(maps, "relative", None)[0])
