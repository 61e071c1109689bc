"""Every CAM method on one image, side by side: the reviewers' method grid.

One forward and one backward pass at the chosen layer give the activations and gradients that Grad-CAM,
HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM and Eigen-CAM all read (:func:`medimg.explain.maps.layer_pass`);
Ablation-CAM then runs one batched pass of the network's tail, and Score-CAM one masked forward pass per
channel (in the grid, by default, only the channels whose activation varies most: see
:data:`SCORECAM_GRID_CHANNELS`).

Three things the grid reports rather than hides:

- **empty maps**: a map with no positive value before the ReLU means "no region raises <class>"; it is not
  min-max stretched into noise (:attr:`GridMap.empty`);
- **coinciding methods**: maps that are identical at this layer are grouped (:attr:`MethodGrid.groups`), with
  the reason when it is mathematical: at a layer that feeds global average pooling and a linear head the
  gradient is the same at every cell, and Grad-CAM, HiResCAM and XGrad-CAM reduce to one formula;
- **resolution**: every map is upsampled from the layer's grid (e.g. 4 x 4 cells for a 128 px ResNet at
  ``layer4``), which :attr:`MethodGrid.grid` states.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.explain.maps import (
    LayerPass,
    _check_inputs,
    _model_input,
    _resolve_target,
    _softmax,
    cam_layer_of,
    is_empty,
    layer_pass,
    upsample,
)
from medimg.explain.methods import CLASS_AGNOSTIC, METHOD_LABELS, METHODS, method_name
from medimg.explain.replicas import ExplainError, as_model, replica_pool, resolve_layer

__all__ = ["GRID_METHODS", "SCORECAM_GRID_CHANNELS", "GRID_SCALES", "COINCIDE_ATOL", "LayerOption", "GridMap",
           "MethodGrid", "cam_layers", "method_grid", "coinciding_groups", "grid_vmax", "grid_text"]

#: Methods of the grid, in display order.
GRID_METHODS: tuple[str, ...] = ("gradcam", "hirescam", "xgradcam", "gradcam++", "layercam", "eigencam",
                                 "ablationcam", "scorecam")
#: Channels Score-CAM masks with in the grid (the most varying ones); None = all (the published method).
SCORECAM_GRID_CHANNELS: int | None = 32
#: Colour scales of the grid: min-max per map; one divisor for every map of the grid; a per-method test-set
#: percentile (:func:`grid_vmax`).
GRID_SCALES = ("relative", "grid", "global")
#: Two maps coincide when their min-max scaled versions differ by at most this much anywhere.
COINCIDE_ATOL = 1e-3
#: The gradient family: Grad-CAM, HiResCAM and XGrad-CAM are the same map when the gradient is uniform.
_UNIFORM_SAME = frozenset({"gradcam", "hirescam", "xgradcam"})


@dataclass(frozen=True)
class LayerOption:
    """A layer a CAM can target.

    Attributes
    ----------
    name : str
        Dotted module path (e.g. ``"layer3"``).
    grid : (int, int)
        (rows, columns) of its feature map at the model input size: the CAM's resolution.
    channels : int
    default : bool
        The spec's CAM layer.
    """

    name: str
    grid: tuple[int, int]
    channels: int
    default: bool = False

    @property
    def label(self) -> str:
        """``"layer4 (4 x 4 cells, 512 channels) - default"``."""
        return (f"{self.name} ({self.grid[0]} x {self.grid[1]} cells, {self.channels} channels)"
                + (" - the model's CAM layer" if self.default else ""))


_LAYERS: weakref.WeakKeyDictionary[nn.Module, list[LayerOption]] = weakref.WeakKeyDictionary()
_LAYERS_LOCK = threading.Lock()


def _candidates(model: nn.Module) -> list[str]:
    """Stage-like modules in definition order: top-level ``layerN`` blocks (ResNet), else the children of a
    ``features`` container that hold a convolution (DenseNet, EfficientNet, MobileNet, ConvNeXt, SmallCNN)."""
    top = [n for n, _ in model.named_children()]
    stages = [n for n in top if n.startswith("layer") and n[5:].isdigit()]
    if stages:
        return stages
    feats = getattr(model, "features", None)
    out: list[str] = []
    if isinstance(feats, nn.Module):
        for n, mod in feats.named_children():
            if isinstance(mod, nn.Conv2d) or any(isinstance(c, nn.Conv2d) for c in mod.modules()):
                out.append(f"features.{n}")
    return out


def cam_layers(predictor: Any) -> list[LayerOption]:
    """The layers a CAM can target, with their grids (the network's stages and the spec's CAM layer).

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Probed once on a private replica (one forward pass of a zero image, hooks released); the result is
        kept per model.

    Returns
    -------
    list of LayerOption
        In the order the layers run; only layers that run once and output (N, C, h, w) feature maps.
    """
    model = as_model(predictor)
    with _LAYERS_LOCK:
        if model in _LAYERS:
            return list(_LAYERS[model])
    spec = predictor.spec
    default = cam_layer_of(spec)
    names = _candidates(model)
    if default and default not in names:
        names.append(default)
    c = spec.preprocess.in_chans
    h, w = spec.preprocess.input_size
    seen: dict[str, list[tuple[int, ...]]] = {n: [] for n in names}
    order: list[str] = []
    with replica_pool(predictor).borrow() as replica:
        handles = []
        try:
            for n in names:
                try:
                    mod = resolve_layer(replica, n)
                except Exception:  # noqa: BLE001 - a candidate that does not resolve is skipped
                    continue

                def hook(_m: nn.Module, _i: Any, o: Any, n: str = n) -> None:
                    if isinstance(o, torch.Tensor):
                        seen[n].append(tuple(o.shape))
                        if n not in order:
                            order.append(n)

                handles.append(mod.register_forward_hook(hook))
            with torch.inference_mode():
                dev = next(replica.parameters()).device
                replica(torch.zeros((1, c, h, w), device=dev))
        finally:
            for hd in handles:
                hd.remove()
    out = [LayerOption(n, (int(seen[n][0][2]), int(seen[n][0][3])), int(seen[n][0][1]), n == default)
           for n in order if len(seen[n]) == 1 and len(seen[n][0]) == 4]
    with _LAYERS_LOCK:
        _LAYERS[model] = out
    return list(out)


@dataclass(frozen=True, eq=False)
class GridMap:
    """One method's map in the grid.

    Attributes
    ----------
    method : str
        Canonical name (a key of :data:`medimg.explain.METHODS`).
    label : str
        Display name ("Grad-CAM").
    heatmap : (H, W) float32 ndarray in [0, 1], read-only
        At the model input size, on the grid's colour scale; all zero when ``empty``.
    raw : (H, W) float32 ndarray >= 0, read-only
        The ReLU-ed, upsampled map before any scaling (units depend on the method).
    raw_max : float
    empty : bool
        No region raises the class (nothing positive before the ReLU): show "no region raises <class>".
    class_agnostic : bool
        The map is the same whatever class is asked for (Eigen-CAM).
    seconds : float
        This method's own computation (the shared forward/backward pass is counted once, in
        :attr:`MethodGrid.seconds`).
    note : str
        What differs from the published method, e.g. Score-CAM on the 32 most varying channels; else ``""``.
    """

    method: str
    label: str
    heatmap: np.ndarray
    raw: np.ndarray
    raw_max: float
    empty: bool
    class_agnostic: bool
    seconds: float
    note: str = ""


@dataclass(frozen=True, eq=False)
class MethodGrid:
    """Every method's map of one image at one layer.

    Attributes
    ----------
    maps : dict of method -> GridMap
        In :data:`GRID_METHODS` order.
    layer : str
    grid : (int, int)
        (rows, columns) of the layer's feature map.
    input_size : (int, int)
    target_index : int
    target_label : str
    target_probability : float
        Calibrated probability of the target class.
    groups : list of tuple of str
        Methods whose (non-empty) maps coincide, two or more per group.
    group_reasons : dict of tuple -> str
        Why each group coincides.
    uniform_gradient : bool
        The class score's gradient is the same at every cell (see :class:`medimg.explain.maps.LayerPass`).
    scale : {"relative", "grid", "global"}
    vmax : dict of method -> float
        Divisors used for ``"grid"`` / ``"global"``; empty for ``"relative"``.
    seconds : dict of str -> float
        ``"forward/backward"`` and each method's own time.
    """

    maps: dict[str, GridMap]
    layer: str
    grid: tuple[int, int]
    input_size: tuple[int, int]
    target_index: int
    target_label: str
    target_probability: float
    groups: list[tuple[str, ...]] = field(default_factory=list)
    group_reasons: dict[tuple[str, ...], str] = field(default_factory=dict)
    uniform_gradient: bool = False
    scale: str = "relative"
    vmax: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def grid_label(self) -> str:
        """``"4 x 4 cells"``: the resolution every map is upsampled from."""
        return f"{self.grid[0]} x {self.grid[1]} cells"

    @property
    def total_seconds(self) -> float:
        """Wall time of the whole grid (shared pass + every method)."""
        return float(sum(self.seconds.values()))

    def group_of(self, method: str) -> tuple[str, ...] | None:
        """The coinciding group ``method`` belongs to, or None."""
        for g in self.groups:
            if method in g:
                return g
        return None


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(x)


def coinciding_groups(maps: dict[str, np.ndarray], atol: float = COINCIDE_ATOL) -> list[tuple[str, ...]]:
    """Group methods whose maps are identical once min-max scaled.

    Parameters
    ----------
    maps : dict of method -> (H, W) float ndarray
        Non-empty maps (any scale).
    atol : float
        Largest absolute difference, on the [0, 1] min-max scale, for two maps to coincide.

    Returns
    -------
    list of tuple of str
        Groups of two or more methods, each in the order of ``maps``; transitive (single linkage).
    """
    names = list(maps)
    scaled = {n: _minmax(np.asarray(maps[n], dtype=np.float64)) for n in names}
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if scaled[a].shape == scaled[b].shape and float(np.abs(scaled[a] - scaled[b]).max()) <= atol:
                parent[root(b)] = root(a)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def _reason(group: tuple[str, ...], uniform: bool, layer: str) -> str:
    labels = ", ".join(METHOD_LABELS[m] for m in group)
    if uniform and set(group) <= _UNIFORM_SAME | {"layercam"}:
        return (f"{labels} coincide at {layer} by construction: this layer feeds global average pooling and a "
                "linear layer, so the class score's gradient is the same at every cell and the methods reduce to "
                "the same weighted sum of activations (Draelos & Carin 2020). Choose an earlier layer to see "
                "them differ.")
    return f"{labels} give the same map for this image at {layer}."


def method_grid(predictor: Any, preprocessed: Any, target: int | str | None = None,
                methods: Sequence[str] | None = None, layer: str | None = None, scale: str = "relative",
                vmax: dict[str, float] | None = None, scorecam_channels: int | None = SCORECAM_GRID_CHANNELS,
                timeout: float | None = None) -> MethodGrid:
    """Every CAM method's map of one image at one layer, from one shared forward/backward pass.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Its shared model is never hooked; one private replica is borrowed for the whole grid.
    preprocessed : Preprocessed
        Or a Prediction, or a (C, H, W) float32 model input.
    target : int or str, optional
        Class to explain; default the predicted class. Class-agnostic methods ignore it.
    methods : sequence of str, optional
        Default :data:`GRID_METHODS`.
    layer : str, optional
        Target layer (see :func:`cam_layers`); default the spec's CAM layer.
    scale : {"relative", "grid", "global"}
        ``relative``: min-max per map (1 = the most important region of this map). ``grid``: every map divided
        by the largest raw value among the maps of the *same method family* in this grid (gradient x activation
        methods share units; the others are each on their own maximum). ``global``: each method's raw map
        divided by ``vmax[method]`` (e.g. :func:`grid_vmax`, a test-set percentile), clipped to [0, 1].
    vmax : dict of method -> float, optional
        Needed for ``scale="global"``.
    scorecam_channels : int or None
        Score-CAM masks with only this many most varying channels (the note on the map says so); None = all.
    timeout : float, optional
        Seconds to wait for a free replica.

    Returns
    -------
    MethodGrid

    Raises
    ------
    ExplainError
        Unknown method, class or scale; missing ``vmax`` for a global scale; a layer the methods cannot use.
    ModelInputError, SpecError, BusyError
        As in :func:`medimg.explain.cam`.

    References
    ----------
    .. [1] Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
       networks", arXiv:2011.08891, 2020 (Grad-CAM = HiResCAM when the gradient is uniform over the map).
    .. [2] Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    ms = [method_name(m) for m in (methods or GRID_METHODS)]
    if scale not in GRID_SCALES:
        raise ExplainError(f"Unknown scale {scale!r}; choose one of {', '.join(GRID_SCALES)}.")
    if scale == "global" and (not vmax or any(not (vmax.get(m) or 0) > 0 for m in ms)):
        raise ExplainError("scale='global' needs a positive vmax for every method (see grid_vmax).")
    spec = predictor.spec
    t = _resolve_target(target, spec.labels)
    x = _model_input(preprocessed)[None]
    _check_inputs(spec, x)
    layer_name = layer or cam_layer_of(spec)
    temperature = spec.temperature

    def decide(lg: np.ndarray) -> int:
        return int(predictor.decide(_softmax(lg, temperature)))

    kwargs = {} if timeout is None else {"timeout": timeout}
    with replica_pool(predictor).borrow(**kwargs) as replica:
        lp = _grid_pass(replica, layer_name, x, t, ms, decide, scorecam_channels)
    idx = lp.targets[0]
    size = tuple(spec.preprocess.input_size)
    raws: dict[str, np.ndarray] = {}
    empties: dict[str, bool] = {}
    for m in ms:
        empties[m] = is_empty(lp.pre[m][0])
        r = upsample(lp.pre[m], size)[0]
        if empties[m]:
            r[:] = 0.0
        raws[m] = r
    divisors: dict[str, float] = {}
    if scale == "grid":
        fam = [m for m in ms if m in _UNIFORM_SAME | {"layercam"}]
        shared = max([float(raws[m].max()) for m in fam] or [0.0])
        for m in ms:
            d = shared if m in fam else float(raws[m].max())
            divisors[m] = d if d > 0 else 1.0
    elif scale == "global":
        divisors = {m: float(vmax[m]) for m in ms}  # type: ignore[index]
    out: dict[str, GridMap] = {}
    for m in ms:
        r = raws[m]
        if empties[m]:
            heat = np.zeros_like(r)
        elif scale == "relative":
            heat = _minmax(r).astype(np.float32)
        else:
            heat = np.clip(r / np.float32(divisors[m]), 0.0, 1.0).astype(np.float32)
        heat.setflags(write=False)
        r.setflags(write=False)
        note = ""
        if m == "scorecam" and scorecam_channels is not None and scorecam_channels < lp.channels:
            note = (f"Score-CAM on the {scorecam_channels} channels whose activation varies most (of "
                    f"{lp.channels}); the others weigh 0.")
        out[m] = GridMap(m, METHOD_LABELS[m], heat, r, float(r.max()), empties[m], m in CLASS_AGNOSTIC,
                         float(lp.seconds.get(m, 0.0)), note)
    nonempty = {m: raws[m] for m in ms if not empties[m]}
    groups = coinciding_groups(nonempty)
    reasons = {g: _reason(g, lp.uniform_gradient, layer_name) for g in groups}
    prob = float(_softmax(lp.logits[0], temperature)[idx])
    return MethodGrid(maps=out, layer=layer_name, grid=lp.grid, input_size=size, target_index=idx,
                      target_label=spec.labels[idx], target_probability=prob, groups=groups, group_reasons=reasons,
                      uniform_gradient=lp.uniform_gradient, scale=scale, vmax=divisors, seconds=dict(lp.seconds))


def _grid_pass(replica: nn.Module, layer: str, x: np.ndarray, target: int | None, methods: list[str],
               decide: Any, scorecam_channels: int | None) -> LayerPass:
    """:func:`layer_pass` with Score-CAM restricted to ``scorecam_channels`` (a per-call subclass: the shared
    class is never changed)."""
    table = None
    if "scorecam" in methods and scorecam_channels is not None:
        table = {"scorecam": type("_GridScoreCAM", (METHODS["scorecam"],), {"max_channels": int(scorecam_channels)})}
    return layer_pass(replica, layer, x, [target], methods, decide, table=table)


def grid_vmax(predictor: Any, model_inputs: np.ndarray, methods: Sequence[str] | None = None,
              layer: str | None = None, q: float = 99.0, targets: Sequence[int | None] | None = None,
              scorecam_channels: int | None = SCORECAM_GRID_CHANNELS) -> dict[str, float]:
    """Per-method divisors for ``scale="global"``: the ``q``-th percentile of each method's raw map maxima over
    reference images (e.g. test images), so a map can be compared with the test set's maps.

    Parameters
    ----------
    predictor : medimg.predict.Predictor
    model_inputs : (N, C, H, W) float32 ndarray
        Normalised reference images.
    methods : sequence of str, optional
        Default :data:`GRID_METHODS`.
    layer : str, optional
    q : float in (0, 100]
    targets : sequence of (int or None), optional
        Class per image (default predicted).
    scorecam_channels : int or None
        As in :func:`method_grid`.

    Returns
    -------
    dict of method -> float > 0
        1.0 for a method whose every reference map is empty.

    Raises
    ------
    ExplainError
        No images, or a target count that differs from the image count.
    """
    x = np.asarray(model_inputs, dtype=np.float32)
    ms = [method_name(m) for m in (methods or GRID_METHODS)]
    tl = list(targets) if targets is not None else [None] * len(x)
    if len(x) == 0 or len(tl) != len(x):
        raise ExplainError(f"grid_vmax needs one target per reference image and at least one image; got "
                           f"{len(tl)} targets for {len(x)} images.")
    spec = predictor.spec
    layer_name = layer or cam_layer_of(spec)
    maxima: dict[str, list[float]] = {m: [] for m in ms}
    def decide(lg: np.ndarray) -> int:
        return int(predictor.decide(_softmax(lg, spec.temperature)))

    with replica_pool(predictor).borrow() as replica:
        for i in range(len(x)):
            lp = _grid_pass(replica, layer_name, x[i : i + 1], _resolve_target(tl[i], spec.labels), ms, decide,
                            scorecam_channels)
            for m in ms:
                maxima[m].append(0.0 if is_empty(lp.pre[m][0]) else float(np.maximum(lp.pre[m][0], 0).max()))
    out = {}
    for m, v in maxima.items():
        p = float(np.percentile(v, q))
        out[m] = p if p > 0 else 1.0
    return out


def grid_text(g: MethodGrid) -> dict[str, str]:
    """One caption per method: its label, the grid, and what is special about it (empty, class-agnostic,
    coinciding, a shortcut).

    Returns
    -------
    dict of method -> str
    """
    out = {}
    for m, gm in g.maps.items():
        parts = [f"{gm.label} - {g.grid_label}"]
        if gm.class_agnostic:
            parts.append("class-agnostic (the same for every class)")
        if gm.empty:
            parts.append(f"no region raises {g.target_label}")
        grp = g.group_of(m)
        if grp is not None:
            others = ", ".join(METHOD_LABELS[o] for o in grp if o != m)
            parts.append(f"identical to {others}")
        if gm.note:
            parts.append(gm.note)
        out[m] = "; ".join(parts)
    return out
