"""Looking inside the CNN, for educators: the layer table, first-layer filters, feature maps, CAMs at every
stage, occlusion maps and preprocessing what-ifs.

Nothing here hooks or changes the shared model: hooks live only on a borrowed private replica (a Predictor's
model) or on a private deep copy (a bare module), and occlusion and what-ifs run plain predictions
(``torch.inference_mode``, no hooks).

Main entry points
-----------------
- :func:`layer_table` -> list of :class:`LayerRow` (type, output shape, parameters, receptive field, CAM layer)
- :func:`stage_layers`, :func:`stage_cams` -> a heat map at the end of every resolution stage
- :func:`first_layer_filters`, :func:`feature_maps`, :func:`channel_order`
- :func:`occlusion` (Zeiler & Fergus 2014) and :func:`occlude` (the probabilities with one region covered)
- :func:`what_if` -> :class:`WhatIf` (another window, input size, geometry or no normalisation)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medimg.errors import ModelInputError, PreprocessError
from medimg.explain.maps import _model_input, _resolve_target, cam, cam_layer_of
from medimg.explain.replicas import ExplainError, as_model, replica_pool, resolve_layer
from medimg.io.image import MedicalImage, Window
from medimg.preprocess import run as preprocess_run

__all__ = ["layer_names", "first_layer_filters", "feature_maps", "channel_order", "occlusion", "occlude",
           "LayerRow", "layer_table", "stage_layers", "StageCam", "stage_cams", "WhatIf", "what_if",
           "WHAT_IF_SIZES", "slide_images"]

#: Input sides (pixels) a what-if may ask for: small enough to stay fast on a CPU, large enough to run.
WHAT_IF_SIZES = (8, 1024)


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


@contextmanager
def _private(model_or_predictor: Any, timeout: float | None = None) -> Iterator[nn.Module]:
    """A model that may be hooked: a borrowed replica of a Predictor's model, or a deep copy of a bare module."""
    if isinstance(model_or_predictor, nn.Module):
        with torch.inference_mode(False), torch.no_grad():
            m = copy.deepcopy(model_or_predictor).eval()
        yield m
        return
    kwargs = {} if timeout is None else {"timeout": timeout}
    with replica_pool(model_or_predictor).borrow(**kwargs) as replica:
        yield replica


def feature_maps(predictor: Any, preprocessed: Any, layer: str, timeout: float | None = None) -> np.ndarray:
    """Activations of one layer for one image, read on a private replica.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input.
    layer : str
        Dotted module path (see :func:`layer_names` or :func:`layer_table`).
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
    with _private(predictor, timeout) as replica:
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


def channel_order(maps: np.ndarray) -> np.ndarray:
    """Channels of a layer's feature maps, most active first (mean absolute activation, ties by index).

    Parameters
    ----------
    maps : (C, h, w) float ndarray
        :func:`feature_maps` output.

    Returns
    -------
    (C,) int64 ndarray
        A permutation of ``range(C)``.
    """
    act = np.abs(np.asarray(maps, dtype=np.float64)).mean(axis=(1, 2))
    return np.argsort(-act, kind="stable").astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# The layer table


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table of :func:`layer_table`.

    Attributes
    ----------
    name : str
        Dotted module path (``"input"`` for the first row).
    kind : str
        Module class, e.g. ``"Conv2d"``, ``"BasicBlock"``.
    detail : str
        Kernel, stride, padding of a convolution or pooling (``"3x3, stride 1, pad 1"``), features of a linear
        layer, ``""`` otherwise.
    out_shape : tuple of int
        Output shape of one image: (C, H, W) for feature maps, (F,) after flattening.
    params : int
        Trainable and non-trainable parameters of the module (its submodules included; buffers excluded).
    rf : (int, int) or None
        Theoretical receptive field (rows, columns) of one output unit, in input pixels, along the main path
        (Araujo et al. 2019); None once global pooling or a fully connected layer sees the whole image.
    jump : (int, int)
        Input pixels between neighbouring output units (the product of strides so far).
    is_cam : bool
        True for the row whose output is the CAM layer's output (the heat map is computed there).
    """

    name: str
    kind: str
    detail: str
    out_shape: tuple[int, ...]
    params: int
    rf: tuple[int, int] | None
    jump: tuple[int, int]
    is_cam: bool = False

    @property
    def spatial(self) -> tuple[int, int] | None:
        """(H, W) of a feature-map output, None for flat outputs."""
        return (int(self.out_shape[1]), int(self.out_shape[2])) if len(self.out_shape) == 3 else None


@dataclass
class _RF:
    rf: tuple[int, int] | None
    jump: tuple[int, int]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _leaf_rf(mod: nn.Module, r: _RF) -> _RF:
    """Receptive field after one leaf module, from the one before it."""
    if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
        return _RF(None, r.jump)  # every output sees the whole input
    if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(mod.kernel_size)
        s = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
        d = _pair(getattr(mod, "dilation", 1))
        if r.rf is None:
            return _RF(None, (r.jump[0] * s[0], r.jump[1] * s[1]))
        rf = tuple(r.rf[i] + (d[i] * (k[i] - 1)) * r.jump[i] for i in range(2))
        return _RF((int(rf[0]), int(rf[1])), (r.jump[0] * s[0], r.jump[1] * s[1]))
    return _RF(r.rf, r.jump)


def _detail(mod: nn.Module) -> str:
    if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(mod.kernel_size)
        s = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
        p = mod.padding if isinstance(mod.padding, str) else _pair(mod.padding)
        ks = f"{k[0]}x{k[1]}"
        ss = f"{s[0]}" if s[0] == s[1] else f"{s[0]}x{s[1]}"
        ps = p if isinstance(p, str) else (f"{p[0]}" if p[0] == p[1] else f"{p[0]}x{p[1]}")
        extra = f", {mod.in_channels} -> {mod.out_channels} channels" if isinstance(mod, nn.Conv2d) else ""
        return f"{ks}, stride {ss}, pad {ps}{extra}"
    if isinstance(mod, nn.Linear):
        return f"{mod.in_features} -> {mod.out_features} features"
    if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return f"global, to {_pair(mod.output_size)[0]}x{_pair(mod.output_size)[1]}"
    if isinstance(mod, nn.Dropout):
        return f"p = {mod.p:g} (training only)"
    return ""


def _rows(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Table rows: modules reached by descending through Sequential / ModuleList containers only."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, mod: nn.Module) -> None:
        for name, child in mod.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
                walk(path, child)
            else:
                out.append((path, child))

    walk("", model)
    return out


def layer_table(model: Any, input_shape: Sequence[int] | None = None, cam_layer: str | None = None,
                timeout: float | None = None) -> list[LayerRow]:
    """The network's layers with their output shapes, parameters and receptive fields, from one forward pass.

    Rows are the modules met by descending through ``nn.Sequential`` containers only: a small CNN lists every
    convolution, ReLU and pooling; a ResNet lists its stem and each residual block. Shapes come from a real
    forward pass of a zero image on a private copy (hooks never touch the shared model).

    Parameters
    ----------
    model : Predictor or torch.nn.Module
        A Predictor's replica is borrowed; a bare module is deep-copied.
    input_shape : (C, H, W), optional
        Model input of one image; default the Predictor's ``spec.preprocess`` (required for a bare module).
    cam_layer : str, optional
        Layer whose output is explained by the heat map; default the Predictor spec's CAM layer. A container
        (e.g. ``"layer4"``) marks its last row.
    timeout : float, optional
        Seconds to wait for a free replica.

    Returns
    -------
    list of LayerRow
        The first row is ``"input"`` (receptive field 1 x 1); then rows in execution order (first call).

    Raises
    ------
    ExplainError
        No ``input_shape`` for a bare module, or the network cannot run on it.
    BusyError
        No replica became free in time.

    References
    ----------
    .. [1] Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019.
    """
    spec = getattr(model, "spec", None)
    if input_shape is None:
        if spec is None:
            raise ExplainError("layer_table needs input_shape=(C, H, W) for a bare network.")
        input_shape = (spec.preprocess.in_chans, *spec.preprocess.input_size)
    if cam_layer is None and spec is not None:
        cam_layer = cam_layer_of(spec)
    c, h, w = (int(v) for v in input_shape)
    rows = []
    with _private(model, timeout) as m:
        row_mods = _rows(m)
        row_of = {id(mod): name for name, mod in row_mods}
        info: dict[int, _RF] = {}
        keep: list[Any] = []  # tensors stay alive during the pass, so their ids are not reused
        last = [_RF((1, 1), (1, 1))]
        first: dict[str, tuple[tuple[int, ...], _RF]] = {}
        order: list[str] = []
        handles = []

        def leaf_hook(mod: nn.Module, args: Any, out: Any) -> None:
            src = args[0] if args and isinstance(args[0], torch.Tensor) else None
            before = info.get(id(src), last[0]) if src is not None else last[0]
            after = _leaf_rf(mod, before)
            if isinstance(out, torch.Tensor):
                info[id(out)] = after
                keep.append(out)
            last[0] = after

        def row_hook(mod: nn.Module, args: Any, out: Any) -> None:
            name = row_of[id(mod)]
            if name in first or not isinstance(out, torch.Tensor):
                return
            first[name] = (tuple(int(v) for v in out.shape[1:]), info.get(id(out), last[0]))
            order.append(name)

        try:
            for mod in m.modules():
                if not any(True for _ in mod.children()):
                    handles.append(mod.register_forward_hook(leaf_hook))
            for _name, mod in row_mods:  # after the leaf hooks: a leaf row reads its own result
                handles.append(mod.register_forward_hook(row_hook))
            dev = next(m.parameters()).device
            x = torch.zeros((1, c, h, w), dtype=torch.float32, device=dev)
            keep.append(x)
            info[id(x)] = _RF((1, 1), (1, 1))
            with torch.inference_mode():
                m(x)
        except RuntimeError as err:
            raise ExplainError(f"The network cannot run on a {c} x {h} x {w} input ({type(err).__name__}).") from err
        finally:
            for hd in handles:
                hd.remove()
        mods = dict(row_mods)
        cam_rows = set()
        if cam_layer:
            inside = [n for n in order if n == cam_layer or n.startswith(cam_layer + ".")]
            if inside:
                cam_rows.add(inside[-1])
        rows.append(LayerRow("input", "Input", "the normalised model input", (c, h, w), 0, (1, 1), (1, 1)))
        for name in order:
            shape, r = first[name]
            mod = mods[name]
            rows.append(LayerRow(name=name, kind=type(mod).__name__, detail=_detail(mod), out_shape=shape,
                                 params=int(sum(p.numel() for p in mod.parameters())), rf=r.rf, jump=r.jump,
                                 is_cam=name in cam_rows))
    return rows


# --------------------------------------------------------------------------------------------------------------
# CAM at every stage


def stage_layers(table: Sequence[LayerRow]) -> list[LayerRow]:
    """The last row of each spatial resolution: where each stage of the network ends (before it downsamples).

    Parameters
    ----------
    table : sequence of LayerRow
        :func:`layer_table` output.

    Returns
    -------
    list of LayerRow
        In depth order, one per feature-map resolution larger than 1 x 1; when the CAM layer's row lies in a
        stage, that row stands for the stage (so the last stage is the heat map the Analyze page shows).
    """
    groups: dict[tuple[int, int], list[LayerRow]] = {}
    for row in table[1:]:
        sp = row.spatial
        if sp is None or sp[0] * sp[1] <= 1:
            continue
        groups.setdefault(sp, []).append(row)
    out = []
    for rows in groups.values():
        cam_rows = [r for r in rows if r.is_cam]
        out.append(cam_rows[0] if cam_rows else rows[-1])
    return sorted(out, key=lambda r: [x.name for x in table].index(r.name))


@dataclass(frozen=True)
class StageCam:
    """A heat map computed at one stage of the network.

    Attributes
    ----------
    layer : str
        Dotted path of the stage's layer.
    grid : (int, int)
        (rows, columns) of the layer's feature maps: the resolution the map is computed at.
    heatmap : (H, W) float32 ndarray in [0, 1]
        The CAM at the model input size (bilinear upsampling of the ``grid`` map, min-max scaled per image).
    cells : (rows, columns) float32 ndarray in [0, 1]
        ``heatmap`` averaged over each cell of the layer's grid (what one unit of the layer covers), min-max
        scaled.
    rf : (int, int) or None
        Receptive field of one unit, in input pixels (:attr:`LayerRow.rf`).
    target_label : str
    target_probability : float
    """

    layer: str
    grid: tuple[int, int]
    heatmap: np.ndarray
    cells: np.ndarray
    rf: tuple[int, int] | None
    target_label: str
    target_probability: float


def _cells(heat: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.array(heat, dtype=np.float32))[None, None]
    g = F.adaptive_avg_pool2d(t, grid)[0, 0].numpy()
    lo, hi = float(g.min()), float(g.max())
    return ((g - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(g)).astype(np.float32)


def stage_cams(predictor: Any, preprocessed: Any, target: int | str | None = None, method: str = "gradcam",
               table: Sequence[LayerRow] | None = None, timeout: float | None = None) -> list[StageCam]:
    """The same class explained at the end of every stage: how a heat map coarsens with depth.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input.
    target : int or str, optional
        Class; None = the predicted class.
    method : str
        A :data:`medimg.explain.METHODS` name.
    table : sequence of LayerRow, optional
        :func:`layer_table` of the predictor (computed when None).
    timeout : float, optional
        Seconds to wait for a free replica.

    Returns
    -------
    list of StageCam
        Shallow to deep; each from :func:`medimg.explain.cam` with ``layer`` set to the stage.

    Raises
    ------
    ExplainError, SpecError, ModelInputError, BusyError
        As :func:`medimg.explain.cam`.
    """
    rows = stage_layers(table if table is not None else layer_table(predictor, timeout=timeout))
    out = []
    for row in rows:
        r = cam(predictor, preprocessed, target=target, method=method, layer=row.name, timeout=timeout)
        grid = row.spatial or (1, 1)
        out.append(StageCam(layer=row.name, grid=grid, heatmap=r.heatmap, cells=_cells(r.heatmap, grid),
                            rf=row.rf, target_label=r.target_label, target_probability=r.target_probability))
    return out


# --------------------------------------------------------------------------------------------------------------
# Occlusion


def _check_one(x: np.ndarray) -> None:
    if x.ndim != 3:
        raise ModelInputError(f"Expected one (C, H, W) model input; got shape {x.shape}.")


def occlude(predictor: Any, preprocessed: Any, box: tuple[int, int, int, int], baseline: float = 0.0) -> np.ndarray:
    """Calibrated probabilities with one rectangle of the model input covered.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input; not modified.
    box : (int, int, int, int)
        ``(row0, col0, row1, col1)`` in model-input pixels, end-exclusive; clipped to the input.
    baseline : float
        Value written into the box in *normalised* units (0 = the spec's mean intensity, a mid-gray).

    Returns
    -------
    (K,) float64 ndarray
        ``softmax(logits / T)`` of the covered input, in ``spec.labels`` order.

    Raises
    ------
    ExplainError
        The box is empty after clipping.
    ModelInputError
        Not one (C, H, W) input of the model's size.
    """
    x = np.array(_model_input(preprocessed), dtype=np.float32)
    _check_one(x)
    _, h, w = x.shape
    r0, c0, r1, c1 = (int(v) for v in box)
    r0, r1 = max(0, min(r0, h)), max(0, min(r1, h))
    c0, c1 = max(0, min(c0, w)), max(0, min(c1, w))
    if r1 <= r0 or c1 <= c0:
        raise ExplainError(f"The region to cover is empty: rows {r0}..{r1}, columns {c0}..{c1} of {h} x {w}.")
    x[:, r0:r1, c0:c1] = baseline
    return predictor.predict_proba(x[None])[0]


def occlusion(predictor: Any, preprocessed: Any, target: int | str | None = None, patch: int = 16,
              stride: int = 8, baseline: float = 0.0, batch_size: int = 64,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
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
    progress : callable, optional
        ``progress(done, total)`` after each batch (patches evaluated so far, all patches), e.g. a progress bar.

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
    _check_one(x)
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
    for i in range(0, len(boxes), max(1, int(batch_size))):
        chunk = boxes[i : i + max(1, int(batch_size))]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for j, (r, cc) in enumerate(chunk):
            batch[j, :, r : r + patch, cc : cc + patch] = baseline
        drop = p0[t] - predictor.predict_proba(batch)[:, t]
        for j, (r, cc) in enumerate(chunk):
            heat[r : r + patch, cc : cc + patch] += drop[j]
            count[r : r + patch, cc : cc + patch] += 1
        if progress is not None:
            progress(i + len(chunk), len(boxes))
    return (heat / np.maximum(count, 1)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# Preprocessing what-ifs


@dataclass(frozen=True)
class WhatIf:
    """The network's answer for one way of preparing the image.

    Attributes
    ----------
    name : str
        Short title, e.g. ``"as trained"``, ``"no normalisation"``.
    description : str
        What was changed, with the parameters.
    pixels : (H, W, C) float32 ndarray in [0, 1]
        The network input as pixels (before normalisation), at the size the network received.
    model_input : (C, H, W) float32 ndarray
        What was fed to the network (normalised unless ``normalised`` is False).
    probs : (K,) float64 ndarray
        Calibrated probabilities (``softmax(logits / T)``), in ``labels`` order.
    labels : tuple of str
    label_index : int
        The Predictor's decision for ``probs``.
    normalised : bool
    """

    name: str
    description: str
    pixels: np.ndarray
    model_input: np.ndarray
    probs: np.ndarray
    labels: tuple[str, ...]
    label_index: int
    normalised: bool = True

    @property
    def label(self) -> str:
        """The predicted label."""
        return self.labels[self.label_index]

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of the network input."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def _probs_any_size(predictor: Any, x: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of one (C, H, W) input of any size (the spec's size goes through the Predictor)."""
    spec = predictor.spec
    if tuple(x.shape[1:]) == tuple(spec.preprocess.input_size):
        return predictor.predict_proba(x[None])[0]
    model = as_model(predictor)
    try:
        with torch.inference_mode():
            logits = model(torch.from_numpy(np.ascontiguousarray(x[None])).to(next(model.parameters()).device))
    except RuntimeError as err:
        raise ExplainError(f"The network cannot run on a {x.shape[1]} x {x.shape[2]} input; try a larger size.") \
            from err
    z = logits.float().cpu().numpy().astype(np.float64)[0] / float(spec.temperature)
    e = np.exp(z - z.max())
    return e / e.sum()


def what_if(predictor: Any, image: MedicalImage, window: Window | None = None,
            input_size: int | tuple[int, int] | None = None, geometry: str | None = None, normalise: bool = True,
            name: str = "", description: str = "") -> WhatIf:
    """Prepare the image another way and run the network: the effect of preprocessing, measured.

    With every argument at its default this is exactly the Predictor's preprocessing and its (single-view,
    calibrated) probabilities.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Plain predictions on its shared model (no hooks, never changed).
    image : MedicalImage
        The decoded frame; not modified.
    window : Window, optional
        Display window to feed instead of the spec's (``preprocess.window``).
    input_size : int or (int, int), optional
        Another input size in pixels (rows, columns); the network must accept it (global pooling before the
        classifier). Within :data:`WHAT_IF_SIZES`.
    geometry : {"stretch", "pad", "crop"}, optional
        Another aspect policy (``"stretch"``: no aspect correction).
    normalise : bool
        False feeds the [0, 1] image without ``(x - mean) / std``.
    name, description : str
        Titles for display (defaults describe the change).

    Returns
    -------
    WhatIf

    Raises
    ------
    PreprocessError
        The image cannot be prepared (too small, non-finite values).
    ExplainError
        ``input_size`` outside :data:`WHAT_IF_SIZES`, or the network cannot run on it.
    SpecError
        Unknown ``geometry``.
    """
    spec = predictor.spec
    changes: dict[str, Any] = {}
    if input_size is not None:
        size = (int(input_size), int(input_size)) if isinstance(input_size, (int, np.integer)) else \
            (int(input_size[0]), int(input_size[1]))
        lo, hi = WHAT_IF_SIZES
        if not (lo <= min(size) and max(size) <= hi):
            raise ExplainError(f"Input size {size[0]} x {size[1]} is outside {lo}..{hi} pixels.")
        changes["input_size"] = size
    if geometry is not None:
        changes["geometry"] = geometry
    config = dataclasses.replace(spec.preprocess, **changes) if changes else spec.preprocess
    pre = preprocess_run(image, config, window)
    x = pre.model_input if normalise else np.ascontiguousarray(pre.image.transpose(2, 0, 1), dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise PreprocessError("The prepared image holds non-finite values.")
    probs = _probs_any_size(predictor, x)
    parts = []
    if window is not None:
        parts.append(f"window {window.name} (center {window.center:g}, width {window.width:g})")
    if input_size is not None:
        parts.append(f"input {config.input_size[0]} x {config.input_size[1]} px (trained at "
                     f"{spec.preprocess.input_size[0]} x {spec.preprocess.input_size[1]})")
    if geometry is not None:
        parts.append(f"geometry {geometry} (trained with {spec.preprocess.geometry})")
    if not normalise:
        parts.append(f"no normalisation: [0, 1] values instead of (x - {list(config.mean)}) / {list(config.std)}")
    return WhatIf(name=name or ("as trained" if not parts else "what-if"),
                  description=description or ("; ".join(parts) if parts else "the model's own preprocessing"),
                  pixels=pre.image, model_input=x, probs=probs, labels=tuple(spec.labels),
                  label_index=int(predictor.decide(probs)), normalised=normalise)


# --------------------------------------------------------------------------------------------------------------
# Still images for slides


def slide_images(predictor: Any, image: MedicalImage, method: str = "gradcam", channels: int = 16,
                 target: int | str | None = None, layers: Sequence[str] | None = None) -> dict[str, bytes]:
    """PNG images of the network's inside for one image, built in memory (``medimg inside`` writes them).

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    image : MedicalImage
        Prepared with the model's own preprocessing.
    method : str
        CAM method of the per-stage heat maps.
    channels : int
        Feature maps per layer (the most active channels first).
    target : int or str, optional
        Class of the heat maps; None = the predicted class.
    layers : sequence of str, optional
        Layers whose feature maps are drawn; default the end of every stage (:func:`stage_layers`).

    Returns
    -------
    dict of str to bytes
        File name -> PNG bytes: ``input.png`` (the network input, real pixels), ``filters.png``,
        ``feature_maps_<k>_<layer>.png`` per layer, ``cam_<k>_<layer>.png`` per stage and ``cam_stages.png``
        (all stages side by side), plus ``layers.csv`` (the layer table, UTF-8 text).

    Raises
    ------
    PreprocessError, ExplainError, SpecError
        As :func:`medimg.preprocess.run`, :func:`feature_maps` and :func:`medimg.explain.cam`.
    """
    from medimg import viz_teaching as vt

    pre = predictor.preprocess(image)
    table = layer_table(predictor)
    stages = stage_cams(predictor, pre, target=target, method=method, table=table)
    out: dict[str, bytes] = {"input.png": vt.png_bytes(vt.enlarge_nearest(pre.image, 336)),
                             "filters.png": vt.png_bytes(vt.filters_rgb(first_layer_filters(predictor)))}
    names = list(layers) if layers else [s.layer for s in stages]
    for k, name in enumerate(names, start=1):
        maps = feature_maps(predictor, pre, name)
        order = channel_order(maps)[: max(1, int(channels))]
        out[f"feature_maps_{k}_{name}.png"] = vt.png_bytes(vt.feature_maps_rgb(maps, order))
    strip = []
    for k, s in enumerate(stages, start=1):
        rgb = vt.cam_cells_rgb(pre.image, s.cells)
        out[f"cam_{k}_{s.layer}.png"] = vt.png_bytes(rgb)
        strip.append(rgb)
    if strip:
        out["cam_stages.png"] = vt.png_bytes(vt.strip_rgb(strip))
    lines = ["layer,type,output,parameters,receptive_field_px,stride_px,cam_layer"]
    for r in table:
        rf = "" if r.rf is None else f"{r.rf[0]}x{r.rf[1]}"
        lines.append(f"{r.name},{r.kind},{'x'.join(map(str, r.out_shape))},{r.params},{rf},"
                     f"{r.jump[0]}x{r.jump[1]},{int(r.is_cam)}")
    out["layers.csv"] = ("\n".join(lines) + "\n").encode("utf-8")
    return out
