"""CAM heat maps through pytorch-grad-cam, on private replicas, and the map back onto the original image."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from medimg.errors import ModelInputError, PreprocessError
from medimg.explain.methods import GRADIENT_FREE, METHODS, method_name
from medimg.explain.replicas import ExplainError, replica_pool, resolve_layer
from medimg.models import DEFAULT_CAM_LAYER
from medimg.preprocess import Geometry
from medimg.spec import ModelSpec

__all__ = ["METHODS", "SCALES", "EMPTY_RTOL", "CamResult", "LayerPass", "cam", "cam_batch", "global_vmax",
           "to_original", "cam_layer_of", "method_name", "raw_maps", "layer_pass", "upsample", "is_empty"]

SCALES = ("relative", "global")


def cam_layer_of(spec: ModelSpec) -> str:
    """The spec's ``cam_layer``, or the architecture's default when the spec leaves it empty."""
    return spec.cam_layer or DEFAULT_CAM_LAYER.get(spec.architecture, "")


# --------------------------------------------------------------------------------------------------------------
# Mapping back onto the original image


def _resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (pixel centres aligned, as ``skimage.transform.resize(order=1)``; anti-aliased when
    shrinking) of an (h, w) map; torch is ~8x faster than scikit-image on multi-megapixel originals."""
    shape = (int(shape[0]), int(shape[1]))
    if tuple(x.shape) == shape:
        return x.astype(np.float32, copy=True)
    down = shape[0] < x.shape[0] or shape[1] < x.shape[1]
    t = torch.from_numpy(np.array(x, dtype=np.float32))[None, None]  # a writable copy (maps are read-only)
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=down)[0, 0].numpy()


def to_original(heatmap: np.ndarray, shape: tuple[int, ...], input_size: tuple[int, int],
                geometry: str, roi: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Map a model-input-sized map back onto the original image, inverting the spec's geometry policy.

    Parameters
    ----------
    heatmap : (H, W) float ndarray in [0, 1]
        At the model input size ``input_size``.
    shape : tuple of int
        (rows, columns, ...) of the original image (before the ``geometry`` preprocessing step); only the first
        two values are used.
    input_size : (int, int)
        The spec's ``preprocess.input_size``.
    geometry : {"stretch", "pad", "crop"}
        ``stretch``: resized to ``shape``; ``pad``: resized to the padded canvas, then the padding is cut away;
        ``crop``: resized onto the centre region the network saw, 0 over the cropped-away margins.
    roi : (r0, r1, c0, c1) tuple of float in [0, 1], optional
        The region of interest the network saw (``spec.preprocess.roi``), as fractions of the original's rows and
        columns (:attr:`CamResult.roi`); the map is placed there, 0 elsewhere.

    Returns
    -------
    (H0, W0) float32 ndarray in [0, 1]
        :meth:`medimg.preprocess.Geometry.inverse`: the inverse of the preprocessing's own geometry step.
    """
    rows, cols = int(shape[0]), int(shape[1])

    def span(lo: float, hi: float, n: int) -> tuple[int, int]:  # fractions -> half-open pixels, never empty
        a = min(int(round(lo * n)), n - 1)
        return a, min(n, max(int(round(hi * n)), a + 1))

    box = None if roi is None else (*span(roi[0], roi[1], rows), *span(roi[2], roi[3], cols))
    try:
        g = Geometry((rows, cols), (int(input_size[0]), int(input_size[1])), geometry, box=box)
        return g.inverse(heatmap)
    except PreprocessError as err:
        raise ExplainError(str(err)) from err


@dataclass(frozen=True, eq=False)
class CamResult:
    """A class activation map for one image.

    Attributes
    ----------
    heatmap : (H, W) float32 ndarray in [0, 1], read-only
        At the model input size. ``scale="relative"``: min-max scaled per image (1 = the most important region
        *of this image*; maps of two images are not comparable); ``scale="global"``: the raw map divided by a
        fixed ``vmax`` and clipped (comparable across images). An all-zero raw map stays all zero.
    method : str
        Canonical method name (a key of :data:`METHODS`).
    target_index : int
        Class explained (default: the predicted class).
    target_label : str
    target_probability : float
        Calibrated probability of ``target_index`` for this image.
    scale : {"relative", "global"}
    layer : str
        Dotted path of the target layer.
    input_size : (int, int)
        (rows, columns) of the model input.
    geometry : {"stretch", "pad", "crop"}
        The spec's geometry policy, used by :meth:`heatmap_original`.
    raw_max : float
        Maximum of the raw (ReLU-ed, unscaled) map, in units of the target logit's gradient x activation.
    vmax : float or None
        The divisor of a ``"global"`` map.
    empty : bool
        No region raises the class: the map before the ReLU has no positive value (see :func:`is_empty`);
        ``heatmap`` is then all zero and must be reported as "no region raises <class>", not drawn.
    grid : (int, int) or None
        (rows, columns) of the layer's feature map: the map's true resolution before upsampling.
    roi : (r0, r1, c0, c1) tuple of float in [0, 1], or None
        The foreground box the network saw (``spec.preprocess.roi == "foreground"``), as fractions of the
        original image's rows and columns; None: the whole image.
    """

    heatmap: np.ndarray
    method: str
    target_index: int
    target_label: str
    target_probability: float
    scale: str
    layer: str
    input_size: tuple[int, int]
    geometry: str
    raw_max: float
    vmax: float | None = None
    empty: bool = False
    grid: tuple[int, int] | None = None
    roi: tuple[float, float, float, float] | None = None

    def heatmap_original(self, shape: tuple[int, ...]) -> np.ndarray:
        """The heat map on the original image grid (see :func:`to_original`).

        Parameters
        ----------
        shape : tuple of int
            (rows, columns[, ...]) of the original image (``MedicalImage.shape``).

        Returns
        -------
        (H0, W0) float32 ndarray in [0, 1]
        """
        return to_original(self.heatmap, shape, self.input_size, self.geometry, self.roi)


# --------------------------------------------------------------------------------------------------------------
# Computing maps


def _roi_fractions(preprocessed: Any) -> tuple[float, float, float, float] | None:
    """The geometry step's foreground box as fractions of the source's rows and columns (None: whole image)."""
    g = getattr(preprocessed, "geometry", None)
    if g is None or g.box is None:
        return None
    (rows, cols), (r0, r1, c0, c1) = g.source, g.box
    return r0 / rows, r1 / rows, c0 / cols, c1 / cols


def _check_inputs(spec: ModelSpec, x: np.ndarray) -> None:
    c = spec.preprocess.in_chans
    h, w = spec.preprocess.input_size
    if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise ModelInputError(f"Model input must be (N, {c}, {h}, {w}); got {tuple(x.shape)}.")
    if not np.all(np.isfinite(x)):
        raise ModelInputError("Model input holds non-finite values.")


def _model_input(preprocessed: Any) -> np.ndarray:
    """(C, H, W) float32 from a Preprocessed, a Prediction, or an array."""
    pre = getattr(preprocessed, "preprocessed", preprocessed)
    x = getattr(pre, "model_input", pre)
    return np.asarray(x, dtype=np.float32)


def _resolve_target(target: int | str | None, labels: Sequence[str]) -> int | None:
    if target is None:
        return None
    if isinstance(target, str):
        if target not in labels:
            raise ExplainError(f"Unknown class {target!r}; the model's classes are {', '.join(labels)}.")
        return list(labels).index(target)
    t = int(target)
    if not 0 <= t < len(labels):
        raise ExplainError(f"Class index {t} is out of range 0..{len(labels) - 1}.")
    return t


def _gradient_leaf(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook (on a replica): restart autograd at the layer output, so backward stops there.

    Parameters of a replica are frozen and the input needs no gradient; the clone keeps later in-place
    operations (e.g. DenseNet's ``relu(inplace=True)``) legal.
    """
    if isinstance(output, torch.Tensor) and output.is_floating_point() and torch.is_grad_enabled():
        return output.detach().requires_grad_(True).clone()
    return None


@dataclass(frozen=True, eq=False)
class LayerPass:
    """Everything one batched pass at a layer gives, before any upsampling (see :func:`layer_pass`).

    Attributes
    ----------
    pre : dict of method -> (N, h, w) float32 ndarray
        Each method's map on the layer's grid *before* the ReLU (negative = evidence against the class).
    targets : list of int
        Class explained per image.
    logits : (N, K) float32 ndarray
    grid : (int, int)
        (rows, columns) of the layer's feature map: the map's true resolution.
    uniform_gradient : bool
        The class score's gradient is the same at every cell of every channel (a layer that feeds global
        average pooling and a linear head): Grad-CAM, HiResCAM and XGrad-CAM then coincide exactly.
    seconds : dict of str -> float
        ``"forward/backward"`` (the shared pass) and each method's own work.
    channels : int
        Channels of the layer's feature map.
    """

    pre: dict[str, np.ndarray]
    targets: list[int]
    logits: np.ndarray
    grid: tuple[int, int]
    uniform_gradient: bool
    seconds: dict[str, float]
    channels: int = 0


def layer_pass(model: nn.Module, layer: str, x: np.ndarray, targets: Sequence[int | None],
               methods: Sequence[str], decide: Callable[[np.ndarray], int],
               table: Mapping[str, type] | None = None) -> LayerPass:
    """Raw CAMs of several methods from ONE forward (and, if any method needs it, one backward) pass, on a
    *private* model (a replica): hooks attached for this call only, always released.

    Gradient methods (Grad-CAM, HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM) and Eigen-CAM all read the same
    activations and gradients; Score-CAM and Ablation-CAM then run their own batched passes.

    Parameters
    ----------
    model : torch.nn.Module
        A private copy in eval mode (never the shared model).
    layer : str
        Dotted path of the target layer.
    x : (N, C, H, W) float32 ndarray
        Normalised model inputs.
    targets : sequence of (int or None), length N
        Class per image; None = ``decide(logits)``.
    methods : sequence of str
        Canonical method names.
    decide : callable
        (K,) logits -> class index (the Predictor's decision rule).
    table : mapping of method -> pytorch-grad-cam class, optional
        Overrides :data:`METHODS` for this call (e.g. a Score-CAM on fewer channels).

    Returns
    -------
    LayerPass

    Raises
    ------
    ExplainError
        The layer runs more than once per forward pass, does not output (N, C, h, w), or gets no gradient.
    """
    import time

    classes = {**METHODS, **(table or {})}
    target_layer = resolve_layer(model, layer)
    device = next(model.parameters()).device
    grad_based = any(m not in GRADIENT_FREE for m in methods)
    leaf = target_layer.register_forward_hook(_gradient_leaf) if grad_based else None
    base = METHODS["gradcam"] if grad_based else METHODS["eigencam"]
    cam_obj = None
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        cam_obj = base(model=model, target_layers=[target_layer])
        ag = cam_obj.activations_and_grads
        with torch.inference_mode(False), torch.set_grad_enabled(grad_based):
            inp = torch.from_numpy(np.array(x, dtype=np.float32)).to(device)
            outputs = ag(inp)  # (N, K)
            logits = outputs.detach().float().cpu().numpy()
            idx = [int(t) if t is not None else int(decide(logits[i])) for i, t in enumerate(targets)]
            tgts = [ClassifierOutputTarget(i) for i in idx]
            if grad_based:
                loss = sum(t(o) for t, o in zip(tgts, outputs, strict=True))
                loss.backward()  # stops at the layer output (a leaf): only the head is back-propagated
            if len(ag.activations) != 1:
                raise ExplainError(f"Layer {layer!r} runs {len(ag.activations)} times per forward pass; choose a "
                                   "layer (block) that runs once, e.g. the last convolutional block.")
            acts = ag.activations[0].numpy()
            if acts.ndim != 4:
                raise ExplainError(f"Layer {layer!r} does not output (N, C, h, w) feature maps.")
            if grad_based and not ag.gradients:
                raise ExplainError(f"No gradient reached layer {layer!r}; choose a layer the output depends on.")
            grads = ag.gradients[0].numpy() if grad_based else None
        # hooks off before the methods that run the model again (Score-CAM, Ablation-CAM)
        cam_obj.activations_and_grads.release()
        if leaf is not None:
            leaf.remove()
            leaf = None
        seconds["forward/backward"] = time.perf_counter() - t0
        pre: dict[str, np.ndarray] = {}
        with torch.inference_mode(False):
            for m in methods:
                t1 = time.perf_counter()
                obj = classes[m](model=model, target_layers=[target_layer])
                obj.activations_and_grads.release()  # used for its formula only: no hooks stay on the model
                raw = obj.get_cam_image(inp, target_layer, tgts, acts, grads, False)  # (N, h, w), before ReLU
                pre[m] = np.nan_to_num(np.asarray(raw, dtype=np.float32))
                seconds[m] = time.perf_counter() - t1
    finally:
        # hooks off the replica even on error (BaseCAM.__exit__ would swallow an IndexError)
        if cam_obj is not None:
            cam_obj.activations_and_grads.release()
        if leaf is not None:
            leaf.remove()
    uniform = False
    if grads is not None:
        g = grads.reshape(grads.shape[0], grads.shape[1], -1)
        spread = float(np.abs(g - g.mean(axis=-1, keepdims=True)).max()) if g.size else 0.0
        uniform = spread <= 1e-6 * max(float(np.abs(g).max()), 1e-30)
    return LayerPass(pre=pre, targets=idx, logits=logits, grid=(int(acts.shape[2]), int(acts.shape[3])),
                     uniform_gradient=uniform, seconds=seconds, channels=int(acts.shape[1]))


def upsample(pre: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """ReLU, then bilinear upsampling of (N, h, w) layer-grid maps to the model input size.

    Returns
    -------
    (N, H, W) float32 ndarray, >= 0
    """
    raw = np.maximum(np.asarray(pre, dtype=np.float32), 0.0)
    up = F.interpolate(torch.from_numpy(np.ascontiguousarray(raw))[:, None], size=tuple(size), mode="bilinear",
                       align_corners=False)[:, 0]
    return np.maximum(up.numpy(), 0.0).astype(np.float32)


#: A map is *empty* (no region raises the class) when its largest positive value is at most this share of its
#: largest absolute value (or it is all zero).
EMPTY_RTOL = 1e-6


def is_empty(pre: np.ndarray) -> bool:
    """Whether a map (before the ReLU) carries no positive evidence for the class.

    Parameters
    ----------
    pre : (h, w) float ndarray
        The method's weighted activation sum before the ReLU (:attr:`LayerPass.pre`).

    Returns
    -------
    bool
        True when ``max(pre) <= EMPTY_RTOL * max(|pre|)``: after the ReLU the map is zero (or round-off), and
        min-max scaling it would draw noise. Such a map means "no region raises this class".
    """
    p = np.asarray(pre, dtype=np.float64)
    big = float(np.abs(p).max()) if p.size else 0.0
    return big == 0.0 or float(p.max()) <= EMPTY_RTOL * big


def raw_maps(model: nn.Module, layer: str, x: np.ndarray, targets: Sequence[int | None], method: str,
             decide: Callable[[np.ndarray], int]) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Raw CAMs on a *private* model (a replica): hooks attached for this call only, always released.

    Parameters
    ----------
    model : torch.nn.Module
        A private copy in eval mode (never the shared model).
    layer : str
        Dotted path of the target layer.
    x : (N, C, H, W) float32 ndarray
        Normalised model inputs.
    targets : sequence of (int or None), length N
        Class per image; None = ``decide(logits)``.
    method : str
        Canonical method name.
    decide : callable
        (K,) logits -> class index (the Predictor's decision rule).

    Returns
    -------
    maps : (N, H, W) float32 ndarray, >= 0
        ReLU of the method's weighted activation sum, bilinearly upsampled to the input size, unscaled.
    targets : list of int
    logits : (N, K) float32 ndarray
    """
    lp = layer_pass(model, layer, x, targets, [method], decide)
    return upsample(lp.pre[method], tuple(x.shape[-2:])), lp.targets, lp.logits


def _scale(maps: np.ndarray, scale: str, vmax: float | None) -> np.ndarray:
    """(N, H, W) raw >= 0 -> [0, 1] per ``scale``; constant maps -> 0."""
    if scale == "global":
        if vmax is None or not vmax > 0:
            raise ExplainError("scale='global' needs a positive vmax (see medimg.explain.global_vmax).")
        return np.clip(maps / np.float32(vmax), 0.0, 1.0).astype(np.float32)
    if scale != "relative":
        raise ExplainError(f"Unknown scale {scale!r}; choose 'relative' or 'global'.")
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    safe = np.where(span > 1e-12, span, 1.0)
    return np.where(span > 1e-12, (maps - lo) / safe, 0.0).astype(np.float32)


def _run(predictor: Any, x: np.ndarray, targets: Sequence[int | None], method: str, layer: str | None,
         batch_size: int, timeout: float | None
         ) -> tuple[np.ndarray, list[int], np.ndarray, str, list[bool], tuple[int, int]]:
    spec: ModelSpec = predictor.spec
    _check_inputs(spec, x)
    layer_name = layer or cam_layer_of(spec)
    pool = replica_pool(predictor)
    maps, idx, logits = [], [], []
    kwargs = {} if timeout is None else {"timeout": timeout}

    def decide(lg: np.ndarray) -> int:
        return int(predictor.decide(_softmax(lg, spec.temperature)))

    empty: list[bool] = []
    grid = (0, 0)
    with pool.borrow(**kwargs) as replica:
        for i in range(0, len(x), batch_size):
            lp = layer_pass(replica, layer_name, x[i : i + batch_size], targets[i : i + batch_size], [method],
                            decide)
            flags = [is_empty(p) for p in lp.pre[method]]
            up = upsample(lp.pre[method], tuple(x.shape[-2:]))
            up[np.asarray(flags, dtype=bool)] = 0.0  # round-off positives would be stretched into noise
            maps.append(up)
            empty.extend(flags)
            idx.extend(lp.targets)
            logits.append(lp.logits)
            grid = lp.grid
    return np.concatenate(maps), idx, np.concatenate(logits), layer_name, empty, grid


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cam(predictor: Any, preprocessed: Any, target: int | str | None = None, method: str = "gradcam",
        scale: str = "relative", vmax: float | None = None, layer: str | None = None,
        timeout: float | None = None) -> CamResult:
    """Class activation map of one image, computed on a private replica of the predictor's model.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Its (shared) model is never hooked or changed; a replica is borrowed (see
        :mod:`medimg.explain.replicas`).
    preprocessed : Preprocessed
        :func:`medimg.preprocess.run` output (or a Prediction, or a (C, H, W) float32 model input).
    target : int or str, optional
        Class index or label to explain; None = the predicted class (the Predictor's decision rule).
    method : str
        One of :data:`METHODS`: ``"gradcam"`` (Selvaraju et al. 2017), ``"hirescam"`` (Draelos & Carin 2020),
        ``"gradcam++"`` (Chattopadhay et al. 2018), ``"xgradcam"``, ``"layercam"``, ``"eigencam"``
        (class-agnostic), ``"scorecam"`` (one forward pass per channel: slow on a CPU).
    scale : {"relative", "global"}
        ``relative``: min-max per image, so 1 marks the most important region *of this image*; ``global``:
        raw map / ``vmax``, clipped to [0, 1] (comparable between images).
    vmax : float, optional
        Divisor for ``scale="global"`` (e.g. :func:`global_vmax` over validation images).
    layer : str, optional
        Target layer; default the spec's ``cam_layer`` (or the architecture default).
    timeout : float, optional
        Seconds to wait for a free replica.

    Returns
    -------
    CamResult
        ``heatmap`` (H, W) float32 in [0, 1] at the model input size; ``heatmap_original(shape)`` for the
        original image. Same input twice gives the identical map.

    Raises
    ------
    SpecError
        The CAM layer does not exist in the network.
    ModelInputError
        The model input has the wrong shape or non-finite values.
    ExplainError
        Unknown method, scale or class; missing ``vmax`` for a global scale.
    BusyError
        No replica became free in time.

    References
    ----------
    .. [1] Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
       Localization", ICCV 2017.
    .. [2] Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
       networks", arXiv:2011.08891, 2020.
    .. [3] Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
       Convolutional Networks", WACV 2018.
    """
    m = method_name(method)
    spec: ModelSpec = predictor.spec
    t = _resolve_target(target, spec.labels)
    if scale not in SCALES:
        raise ExplainError(f"Unknown scale {scale!r}; choose 'relative' or 'global'.")
    x = _model_input(preprocessed)[None]
    maps, idx, logits, layer_name, empty, grid = _run(predictor, x, [t], m, layer, 1, timeout)
    heat = _scale(maps, scale, vmax)[0]
    heat.setflags(write=False)
    prob = float(_softmax(logits[0], spec.temperature)[idx[0]])
    return CamResult(heatmap=heat, method=m, target_index=idx[0], target_label=spec.labels[idx[0]],
                     target_probability=prob, scale=scale, layer=layer_name,
                     input_size=tuple(spec.preprocess.input_size), geometry=spec.preprocess.geometry,
                     raw_max=float(maps[0].max()), vmax=vmax if scale == "global" else None, empty=empty[0],
                     grid=grid, roi=_roi_fractions(preprocessed))


def cam_batch(predictor: Any, model_inputs: np.ndarray | torch.Tensor,
              targets: Sequence[int | None] | int | None = None, method: str = "gradcam", scale: str = "relative",
              vmax: float | None = None, layer: str | None = None, batch_size: int = 32) -> np.ndarray:
    """CAMs of many images in batched forward/backward passes (evaluation, benchmarks).

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    model_inputs : (N, C, H, W) float32 ndarray or tensor
        Normalised model inputs; not modified.
    targets : sequence of (int or None), int or None
        Class per image (None = predicted), or one class for all.
    method, scale, vmax, layer
        As in :func:`cam`.
    batch_size : int
        Images per forward/backward pass.

    Returns
    -------
    (N, H, W) float32 ndarray in [0, 1]
        Equal to :func:`cam` per image (to float rounding, ~1e-6).

    Raises
    ------
    ModelInputError, SpecError, ExplainError, BusyError
        As in :func:`cam`.
    """
    m = method_name(method)
    x = np.asarray(model_inputs.detach().cpu() if isinstance(model_inputs, torch.Tensor) else model_inputs,
                   dtype=np.float32)
    n = len(x)
    labels = predictor.spec.labels
    if targets is None or isinstance(targets, (int, np.integer, str)):
        tl = [_resolve_target(targets, labels)] * n
    else:
        tl = [_resolve_target(t, labels) for t in targets]
        if len(tl) != n:
            raise ExplainError(f"{len(tl)} targets for {n} images.")
    if n == 0:
        h, w = predictor.spec.preprocess.input_size
        return np.zeros((0, h, w), dtype=np.float32)
    maps, _, _, _, _, _ = _run(predictor, x, tl, m, layer, max(1, int(batch_size)), None)
    return _scale(maps, scale, vmax)


def global_vmax(predictor: Any, model_inputs: np.ndarray, method: str = "gradcam", q: float = 99.0,
                targets: Sequence[int | None] | None = None) -> float:
    """A fixed divisor for ``scale="global"``: the ``q``-th percentile of the raw map maxima over reference images.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    model_inputs : (N, C, H, W) float32 ndarray
        Reference images (e.g. the validation split), normalised.
    method : str
    q : float in (0, 100]
    targets : sequence of (int, str or None), optional
        Classes (default predicted).

    Returns
    -------
    float > 0 (1.0 when every reference map is zero)

    Raises
    ------
    ExplainError
        No images, or a target count that differs from the image count.
    """
    x = np.asarray(model_inputs, dtype=np.float32)
    labels = predictor.spec.labels
    tl = [_resolve_target(t, labels) for t in targets] if targets is not None else [None] * len(x)
    if len(tl) != len(x) or len(x) == 0:
        raise ExplainError(f"global_vmax needs one target per reference image and at least one image; got "
                           f"{len(tl)} targets for {len(x)} images.")
    maps, _, _, _, _, _ = _run(predictor, x, tl, method_name(method), None, 32, None)
    v = float(np.percentile(maps.max(axis=(1, 2)), q))
    return v if v > 0 else 1.0


