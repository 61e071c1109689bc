"""Checks for reviewers: is a saliency map faithful to the model (deletion/insertion), and does it depend on
the learned weights at all (model-parameter randomisation)?"""

from __future__ import annotations

import copy
from dataclasses import dataclass
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

__all__ = ["deletion_insertion", "randomisation_sanity", "randomised_copy", "spearman", "Faithfulness",
           "faithfulness", "Sanity", "sanity_check", "SANITY_FAIL_RHO"]

#: Rank correlation with the randomised model's map at or above which a map fails the sanity check.
SANITY_FAIL_RHO = 0.5


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


def randomised_copy(model: Any, layer: str, x: np.ndarray, mode: str = "cascading", seed: int = 0) -> nn.Module:
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


def randomisation_sanity(predictor: Any, preprocessed: Any, method: str = "gradcam",
                         target: int | str | None = None, mode: str = "cascading", seed: int = 0,
                         layer: str | None = None) -> float:
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
        See :func:`randomised_copy`.
    seed : int
    layer : str, optional
        CAM layer; default the spec's.

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
    trained = cam(predictor, preprocessed, target=target, method=m, layer=layer)
    x = _model_input(preprocessed)[None]
    layer = layer or cam_layer_of(predictor.spec)
    rand = randomised_copy(predictor, layer, x, mode=mode, seed=seed)
    temperature = predictor.spec.temperature
    maps, _, _ = raw_maps(rand, layer, x, [trained.target_index], m,
                          lambda lg: int(predictor.decide(_softmax(lg, temperature))))
    return spearman(trained.heatmap, _scale(maps, "relative", None)[0])


# --------------------------------------------------------------------------------------------------------------
# Reviewer-facing summaries (the saliency lab)


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """Deletion and insertion of one map, beside random maps of the same image (Petsiuk et al. 2018).

    Attributes
    ----------
    target : int
    deletion_auc, insertion_auc : float in [0, 1]
        Area under the class probability as the map's most salient pixels are removed (lower = more faithful)
        or restored into a blurred copy (higher = more faithful).
    random_deletion_auc, random_insertion_auc : float in [0, 1]
        Mean of the same areas for ``n_random`` maps of uniform noise (the baseline a map must beat).
    curves : dict of str -> (steps + 1,) float64 ndarray
        ``fraction``, ``deletion``, ``insertion``, ``random_deletion``, ``random_insertion`` (mean over the
        random maps).
    """

    target: int
    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    curves: dict[str, np.ndarray]

    @property
    def beats_random(self) -> tuple[bool, bool]:
        """(deletion below random, insertion above random)."""
        return self.deletion_auc < self.random_deletion_auc, self.insertion_auc > self.random_insertion_auc

    @property
    def verdict(self) -> str:
        """One sentence for a reviewer."""
        d, i = self.beats_random
        if d and i:
            return "More faithful than a random map on both deletion and insertion."
        if d or i:
            return ("Better than a random map on " + ("deletion" if d else "insertion") + " only: the map is "
                    "partly faithful.")
        return "No better than a random map: removing or restoring the pixels it marks does not move the output."


def faithfulness(predictor: Any, preprocessed: Any, heatmap: np.ndarray | CamResult,
                 target: int | str | None = None, steps: int = 20, n_random: int = 1, seed: int = 0,
                 blur_sigma: float | None = None) -> Faithfulness:
    """Deletion and insertion AUCs of a map and of ``n_random`` random maps, in one batched prediction.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Plain batched predictions only (no hooks).
    preprocessed : Preprocessed
        Needs ``.image`` (H, W, C) float32 in [0, 1] at the model input size; not modified.
    heatmap : (H, W) float ndarray or CamResult
        The map, at the model input size (any scale: only its ranking matters).
    target : int or str, optional
        Class; default the CamResult's target, else the predicted class.
    steps : int
        Points per curve after the start.
    n_random : int
        Random maps (i.i.d. uniform noise, seeded) averaged for the baseline.
    seed : int
    blur_sigma : float, optional
        As in :func:`deletion_insertion`.

    Returns
    -------
    Faithfulness

    Raises
    ------
    ExplainError
        Bad map size, ``steps`` < 1 or ``n_random`` < 1, unknown class.

    References
    ----------
    .. [1] Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
       BMVC 2018.
    """
    if n_random < 1:
        raise ExplainError(f"n_random must be >= 1, got {n_random}.")
    if isinstance(heatmap, CamResult):
        if target is None:
            target = heatmap.target_index
        heatmap = heatmap.heatmap
    sal = np.asarray(heatmap, dtype=np.float64)
    rng = np.random.default_rng(seed)
    maps = [sal] + [rng.random(sal.shape) for _ in range(n_random)]
    res = _curves(predictor, preprocessed, maps, target, steps, blur_sigma)
    frac = res["fraction"]
    dele, ins = res["deletion"], res["insertion"]
    rd, ri = dele[1:].mean(axis=0), ins[1:].mean(axis=0)
    return Faithfulness(target=res["target"], deletion_auc=_trapezoid(dele[0], frac),
                        insertion_auc=_trapezoid(ins[0], frac),
                        random_deletion_auc=float(np.mean([_trapezoid(d, frac) for d in dele[1:]])),
                        random_insertion_auc=float(np.mean([_trapezoid(i, frac) for i in ins[1:]])),
                        curves={"fraction": frac, "deletion": dele[0], "insertion": ins[0], "random_deletion": rd,
                                "random_insertion": ri})


def _curves(predictor: Any, preprocessed: Any, maps: list[np.ndarray], target: int | str | None, steps: int,
            blur_sigma: float | None) -> dict[str, Any]:
    """Deletion and insertion probabilities of several maps of one image, in one batch."""
    img = np.asarray(preprocessed.image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    h, w, _ = img.shape
    for sal in maps:
        if sal.shape != (h, w):
            raise ExplainError(f"heatmap {sal.shape} must match the model input size {(h, w)}.")
    if steps < 1:
        raise ExplainError(f"steps must be >= 1, got {steps}.")
    config = predictor.spec.preprocess
    t = _resolve_target(target, predictor.spec.labels)
    if t is None:
        t = int(predictor.decide(predictor.predict_proba(normalise(img, config)[None])[0]))
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    sigma = float(blur_sigma) if blur_sigma is not None else max(h, w) / 45.0
    blurred = np.stack([gaussian_filter(img[..., c], sigma) for c in range(img.shape[2])], axis=-1)
    batch = []
    for sal in maps:
        order = np.argsort(-np.nan_to_num(sal).ravel(), kind="stable")
        for k in counts:
            mask = np.zeros(h * w, dtype=bool)
            mask[order[:k]] = True
            mask = mask.reshape(h, w)
            d = img.copy()
            d[mask] = 0.0
            batch.append(normalise(d, config))
        for k in counts:
            mask = np.zeros(h * w, dtype=bool)
            mask[order[:k]] = True
            mask = mask.reshape(h, w)
            i = blurred.copy()
            i[mask] = img[mask]
            batch.append(normalise(i, config))
    probs = predictor.predict_proba(np.stack(batch))[:, t].reshape(len(maps), 2, steps + 1)
    return {"fraction": counts / float(h * w), "deletion": probs[:, 0], "insertion": probs[:, 1], "target": t}


@dataclass(frozen=True, eq=False)
class Sanity:
    """Model-parameter randomisation test of one map (Adebayo et al. 2018).

    Attributes
    ----------
    method : str
    layer : str
    mode : {"cascading", "top"}
    rho : float in [-1, 1] or NaN
        Spearman rank correlation between the trained model's map and the randomised model's map; NaN when the
        trained map is empty (nothing to compare).
    randomised : (H, W) float32 ndarray in [0, 1]
        The randomised model's map (min-max scaled), for display.
    """

    method: str
    layer: str
    mode: str
    rho: float
    randomised: np.ndarray

    @property
    def passed(self) -> bool | None:
        """True when the map changes with the weights (``rho < SANITY_FAIL_RHO``); None when not applicable."""
        return None if np.isnan(self.rho) else bool(self.rho < SANITY_FAIL_RHO)

    @property
    def verdict(self) -> str:
        """One sentence for a reviewer."""
        if self.passed is None:
            return "Not applicable: the trained model's map is empty."
        if self.passed:
            return (f"Passes: randomising the weights from the output down to {self.layer} changes the map "
                    f"(rank correlation {self.rho:.2f}).")
        return (f"Fails: this map barely depends on the trained weights (rank correlation {self.rho:.2f} with "
                f"the map of a network whose layers from the output down to {self.layer} are random).")


def sanity_check(predictor: Any, preprocessed: Any, method: str = "gradcam", target: int | str | None = None,
                 layer: str | None = None, mode: str = "cascading", seed: int = 0,
                 trained: np.ndarray | None = None) -> Sanity:
    """Cascading model-parameter randomisation (Adebayo et al. 2018) of one method's map.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Not changed: the randomised network is a separate private copy.
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input.
    method : str
    target : int or str, optional
        Class; default the trained model's prediction (the same class on both networks).
    layer : str, optional
        CAM layer; default the spec's.
    mode : {"cascading", "top"}
        See :func:`randomised_copy`.
    seed : int
    trained : (H, W) ndarray, optional
        The trained model's map when already computed (e.g. by the method grid); computed otherwise.

    Returns
    -------
    Sanity
        ``rho`` >= :data:`SANITY_FAIL_RHO` fails: the map barely depends on what the network learned.

    Raises
    ------
    SpecError, ExplainError, ModelInputError
        As in :func:`medimg.explain.cam`.

    References
    ----------
    .. [1] Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    m = method_name(method)
    layer_name = layer or cam_layer_of(predictor.spec)
    t = _resolve_target(target, predictor.spec.labels)
    x = _model_input(preprocessed)[None]
    if trained is None or t is None:
        c = cam(predictor, preprocessed, target=t, method=m, layer=layer_name)
        t = c.target_index
        trained = None if c.empty else c.heatmap
    rand = randomised_copy(predictor, layer_name, x, mode=mode, seed=seed)
    temperature = predictor.spec.temperature
    maps, _, _ = raw_maps(rand, layer_name, x, [t], m, lambda lg: int(predictor.decide(_softmax(lg, temperature))))
    rmap = _scale(maps, "relative", None)[0]
    rmap.setflags(write=False)
    tr = None if trained is None else np.asarray(trained)
    rho = float("nan") if tr is None or float(tr.max()) <= 0 else spearman(tr, rmap)
    return Sanity(m, layer_name, mode, rho, rmap)
