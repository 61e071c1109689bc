"""CAM heat maps through pytorch-grad-cam, on private replicas, and the map back onto the original image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from medimg.errors import ModelInputError
from medimg.explain.methods import GRADIENT_FREE, METHODS, method_name
from medimg.explain.replicas import ExplainError, replica_pool, resolve_layer
from medimg.models import DEFAULT_CAM_LAYER
from medimg.spec import ModelSpec

__all__ = ["METHODS", "SCALES", "CamResult", "cam", "cam_batch", "global_vmax", "to_original", "cam_layer_of",
           "method_name", "raw_maps"]

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
                geometry: str) -> np.ndarray:
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

    Returns
    -------
    (H0, W0) float32 ndarray in [0, 1]
        Bilinear interpolation; mirrors :func:`medimg.preprocess.run`'s arithmetic exactly.
    """
    rows, cols = int(shape[0]), int(shape[1])
    out_r, out_c = input_size
    h = np.asarray(heatmap, dtype=np.float32)
    if geometry == "pad":
        side_r = max(rows, int(round(cols * out_r / out_c)))
        side_c = max(cols, int(round(rows * out_c / out_r)))
        r0, c0 = (side_r - rows) // 2, (side_c - cols) // 2
        out = _resize(h, (side_r, side_c))[r0 : r0 + rows, c0 : c0 + cols]
    elif geometry == "crop":
        target = out_r / out_c
        out = np.zeros((rows, cols), dtype=np.float32)
        if rows / cols > target:
            keep = int(round(cols * target))
            r0 = (rows - keep) // 2
            out[r0 : r0 + keep] = _resize(h, (keep, cols))
        else:
            keep = int(round(rows / target))
            c0 = (cols - keep) // 2
            out[:, c0 : c0 + keep] = _resize(h, (rows, keep))
    elif geometry == "stretch":
        out = _resize(h, (rows, cols))
    else:
        raise ExplainError(f"Unknown geometry policy {geometry!r}; expected stretch, pad or crop.")
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


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
        return to_original(self.heatmap, shape, self.input_size, self.geometry)


# --------------------------------------------------------------------------------------------------------------
# Computing maps


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
    target_layer = resolve_layer(model, layer)
    device = next(model.parameters()).device
    cls = METHODS[method]
    grad_based = method not in GRADIENT_FREE
    leaf = target_layer.register_forward_hook(_gradient_leaf) if grad_based else None
    cam_obj = None
    try:
        cam_obj = cls(model=model, target_layers=[target_layer])
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
            raw = cam_obj.get_cam_image(inp, target_layer, tgts, acts, grads, False)  # (N, h, w)
    finally:
        # hooks off the replica even on error (BaseCAM.__exit__ would swallow an IndexError)
        if cam_obj is not None:
            cam_obj.activations_and_grads.release()
        if leaf is not None:
            leaf.remove()
    raw = np.maximum(np.nan_to_num(np.asarray(raw, dtype=np.float32)), 0.0)
    up = F.interpolate(torch.from_numpy(raw)[:, None], size=tuple(x.shape[-2:]), mode="bilinear",
                       align_corners=False)[:, 0]
    return np.maximum(up.numpy(), 0.0).astype(np.float32), idx, logits


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
         batch_size: int, timeout: float | None) -> tuple[np.ndarray, list[int], np.ndarray, str]:
    spec: ModelSpec = predictor.spec
    _check_inputs(spec, x)
    layer_name = layer or cam_layer_of(spec)
    pool = replica_pool(predictor)
    maps, idx, logits = [], [], []
    kwargs = {} if timeout is None else {"timeout": timeout}

    def decide(lg: np.ndarray) -> int:
        return int(predictor.decide(_softmax(lg, spec.temperature)))

    with pool.borrow(**kwargs) as replica:
        for i in range(0, len(x), batch_size):
            m, t, lg = raw_maps(replica, layer_name, x[i : i + batch_size], targets[i : i + batch_size], method,
                                decide)
            maps.append(m)
            idx.extend(t)
            logits.append(lg)
    return np.concatenate(maps), idx, np.concatenate(logits), layer_name


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
    maps, idx, logits, layer_name = _run(predictor, x, [t], m, layer, 1, timeout)
    heat = _scale(maps, scale, vmax)[0]
    heat.setflags(write=False)
    prob = float(_softmax(logits[0], spec.temperature)[idx[0]])
    return CamResult(heatmap=heat, method=m, target_index=idx[0], target_label=spec.labels[idx[0]],
                     target_probability=prob, scale=scale, layer=layer_name,
                     input_size=tuple(spec.preprocess.input_size), geometry=spec.preprocess.geometry,
                     raw_max=float(maps[0].max()), vmax=vmax if scale == "global" else None)


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
    maps, _, _, _ = _run(predictor, x, tl, m, layer, max(1, int(batch_size)), None)
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
    maps, _, _, _ = _run(predictor, x, tl, method_name(method), None, 32, None)
    v = float(np.percentile(maps.max(axis=(1, 2)), q))
    return v if v > 0 else 1.0


