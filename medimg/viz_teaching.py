"""Plotly figures for teaching: filters, feature maps, CAM by stage, occlusion, real-pixel network inputs and the
training lab's curves. Every function returns a ``go.Figure`` (or an array) and never shows it.

No torch and no Streamlit: numpy, Pillow and plotly only (like :mod:`medimg.viz`). Images are drawn as their
real pixels: heat maps are ``go.Heatmap`` grids (one cell per pixel or per feature-map unit, never smoothed)
and small network inputs are enlarged by nearest-neighbour repetition.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from medimg.viz import to_uint8

__all__ = ["enlarge_nearest", "gray", "filter_grid_figure", "feature_maps_figure", "cam_stages_figure",
           "occlusion_figure", "pixels_figure", "whatif_probabilities_figure", "lab_curves_figure",
           "model_comparison_figure", "filters_rgb", "feature_maps_rgb", "cam_cells_rgb", "strip_rgb", "png_bytes"]

_TEMPLATE = "plotly_white"
_SEP = np.nan  # gaps between tiles of a mosaic are drawn transparent


def enlarge_nearest(image: np.ndarray, min_side: int = 224, max_side: int = 1024) -> np.ndarray:
    """A display image as uint8, enlarged by an integer factor with nearest-neighbour repetition.

    Every pixel of a small network input becomes a visible square block, so a 28 x 28 input looks like 28 x 28
    pixels and not like a blurred photograph.

    Parameters
    ----------
    image : (H, W), (H, W, 1) or (H, W, 3) float ndarray in [0, 1]
        Clipped to [0, 1]; not modified.
    min_side : int
        The longest side is enlarged to at least this many pixels (factor ``ceil(min_side / max(H, W))``).
    max_side : int
        Larger images are downsampled (area average) to this longest side instead.

    Returns
    -------
    (H * f, W * f) or (H * f, W * f, 3) uint8 ndarray
        ``f`` >= 1 an integer; each block of ``f x f`` output pixels is one input pixel.
    """
    u8 = to_uint8(image, max_side)
    f = max(1, math.ceil(min_side / max(u8.shape[:2])))
    if f == 1:
        return u8
    return np.repeat(np.repeat(u8, f, axis=0), f, axis=1)


def gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 view for display: the image itself, its only channel, or the mean of its channels."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., 0] if x.shape[2] == 1 else x.mean(axis=2)
    return x


def _mosaic(tiles: np.ndarray, per_row: int, gap: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(N, h, w) -> one (R, C) array with NaN gaps; and the top-left corner of each tile."""
    n, h, w = tiles.shape
    cols = max(1, min(per_row, n))
    rows = max(1, math.ceil(n / cols))
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), _SEP, dtype=np.float32)
    corners = []
    for i in range(n):
        r, c = divmod(i, cols)
        r0, c0 = r * (h + gap), c * (w + gap)
        out[r0 : r0 + h, c0 : c0 + w] = tiles[i]
        corners.append((r0, c0))
    return out, corners


def _square_pixels(fig: go.Figure, rows: int, cols: int, row: int | None = None, col: int | None = None) -> None:
    kw = {} if row is None else {"row": row, "col": col}
    fig.update_xaxes(visible=False, range=[-0.5, cols - 0.5], constrain="domain", **kw)
    fig.update_yaxes(visible=False, range=[rows - 0.5, -0.5], constrain="domain", **kw)


def _anchor_y_to_x(fig: go.Figure, n: int) -> None:
    for i in range(1, n + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"


def filter_grid_figure(filters: np.ndarray, per_row: int = 8, title: str = "") -> go.Figure:
    """First-layer filters as a grid of small signed images (red positive, blue negative weights).

    Parameters
    ----------
    filters : (F, kh, kw) float ndarray
        :func:`medimg.explain.first_layer_filters` (raw signed weights). Not modified.
    per_row : int
        Filters per row of the grid.
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Heatmap`` mosaic; each filter is divided by its own largest absolute weight (so the pattern of a
        small filter is visible), the colour scale runs -1 .. 1 with 0 white. Hover shows the raw weight.
    """
    f = np.asarray(filters, dtype=np.float32)
    if f.ndim != 3 or len(f) == 0:
        raise ValueError(f"filters must be (F, kh, kw) with F >= 1; got shape {f.shape}.")
    peak = np.abs(f).reshape(len(f), -1).max(axis=1)
    scaled = f / np.where(peak > 0, peak, 1.0)[:, None, None]
    gap = 1
    z, corners = _mosaic(scaled, per_row, gap)
    raw, _ = _mosaic(f, per_row, gap)
    idx = np.full(z.shape, -1, dtype=np.int64)
    for i, (r0, c0) in enumerate(corners):
        idx[r0 : r0 + f.shape[1], c0 : c0 + f.shape[2]] = i
    custom = np.stack([idx, raw], axis=-1)
    fig = go.Figure(go.Heatmap(z=z, customdata=custom, colorscale="RdBu", reversescale=True, zmin=-1, zmax=1,
                               zmid=0, xgap=0, ygap=0, hoverongaps=False,
                               colorbar=dict(title=dict(text="weight / max |weight|", side="right"), thickness=12),
                               hovertemplate="filter %{customdata[0]}<br>weight %{customdata[1]:.4f}<extra></extra>"))
    _square_pixels(fig, *z.shape)
    fig.update_yaxes(scaleanchor="x")
    cols = min(per_row, len(f))
    rows = math.ceil(len(f) / cols)
    fig.update_layout(title=title or f"First-layer filters: {len(f)} of {f.shape[1]} x {f.shape[2]} weights",
                      template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10),
                      height=int(min(900, max(220, 60 + rows * 520 / max(cols, 1)))))
    return fig


def feature_maps_figure(maps: np.ndarray, channels: Sequence[int] | None = None, per_row: int = 8,
                        title: str = "") -> go.Figure:
    """Feature maps of one layer as a grid, each channel min-max scaled on its own (bright = strongly active).

    Parameters
    ----------
    maps : (C, h, w) float ndarray
        :func:`medimg.explain.feature_maps` output. Not modified.
    channels : sequence of int, optional
        Channels to show, in this order (e.g. the most active first, :func:`medimg.explain.channel_order`);
        default all.
    per_row : int
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Heatmap`` mosaic, one cell per activation (no smoothing); hover gives the channel number and the
        raw activation; a label above each tile names the channel.
    """
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim != 3:
        raise ValueError(f"maps must be (C, h, w); got shape {m.shape}.")
    chans = list(range(len(m))) if channels is None else [int(c) for c in channels]
    tiles = m[chans]
    lo = tiles.reshape(len(tiles), -1).min(axis=1)[:, None, None]
    hi = tiles.reshape(len(tiles), -1).max(axis=1)[:, None, None]
    scaled = np.where(hi - lo > 1e-12, (tiles - lo) / np.where(hi - lo > 1e-12, hi - lo, 1.0), 0.0)
    h, w = m.shape[1:]
    gap = max(1, round(max(h, w) / 8))
    z, corners = _mosaic(scaled.astype(np.float32), per_row, gap)
    raw, _ = _mosaic(tiles, per_row, gap)
    idx = np.full(z.shape, -1, dtype=np.int64)
    for i, (r0, c0) in enumerate(corners):
        idx[r0 : r0 + h, c0 : c0 + w] = chans[i]
    fig = go.Figure(go.Heatmap(z=z, customdata=np.stack([idx, raw], axis=-1), colorscale="Viridis", zmin=0, zmax=1,
                               hoverongaps=False, showscale=True,
                               colorbar=dict(title=dict(text="activation (min–max per channel)", side="right"),
                                             thickness=12),
                               hovertemplate="channel %{customdata[0]}<br>activation %{customdata[1]:.3f}"
                                             "<extra></extra>"))
    for i, (r0, c0) in enumerate(corners):
        fig.add_annotation(x=c0 + (w - 1) / 2, y=r0 - 0.5, text=f"ch {chans[i]}", showarrow=False, yanchor="bottom",
                           font=dict(size=10), yshift=0)
    _square_pixels(fig, *z.shape)
    fig.update_yaxes(scaleanchor="x", range=[z.shape[0] - 0.5, -0.5 - max(2.0, h * 0.18)])
    cols = min(per_row, len(chans))
    rows = math.ceil(len(chans) / max(cols, 1))
    fig.update_layout(title=title or f"Feature maps: {len(chans)} of {len(m)} channels, {h} x {w} each",
                      template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10),
                      height=int(min(1100, max(240, 70 + rows * 760 / max(cols, 1)))))
    return fig


def _base_trace(base: np.ndarray) -> go.Heatmap:
    g = gray(base)
    return go.Heatmap(z=g, colorscale="gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip")


def cam_stages_figure(base: np.ndarray, stages: Sequence[tuple[str, np.ndarray]], opacity: float = 0.5,
                      title: str = "", input_title: str | None = None) -> go.Figure:
    """Heat maps of several stages side by side, each drawn on its own grid over the network input.

    Parameters
    ----------
    base : (H, W) or (H, W, C) float ndarray in [0, 1]
        The network input as pixels (``Preprocessed.image``); shown in gray, one cell per pixel.
    stages : sequence of (str, (h, w) float ndarray in [0, 1])
        Subplot title and the stage's map on its layer's grid (:attr:`medimg.explain.teaching.StageCam.cells`);
        each grid cell is drawn as one block covering ``H / h x W / w`` input pixels.
    opacity : float in [0, 1]
        Of the heat map over the image.
    title : str
    input_title : str, optional
        When given, a first column shows the network input alone under this title.

    Returns
    -------
    plotly.graph_objects.Figure
        One column per stage (after the input's, if any); colours are relative (min–max per map).
    """
    first = 1 if input_title is not None else 0
    n = max(1, len(stages) + first)
    g = gray(base)
    rows, cols = g.shape
    titles = ([input_title] if first else []) + [s[0] for s in stages]
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.02)
    if first:
        fig.add_trace(_base_trace(g), row=1, col=1)
        _square_pixels(fig, rows, cols, row=1, col=1)
    for i, (_, cells) in enumerate(stages, start=1 + first):
        c = np.asarray(cells, dtype=np.float32)
        dy, dx = rows / c.shape[0], cols / c.shape[1]
        fig.add_trace(_base_trace(g), row=1, col=i)
        fig.add_trace(go.Heatmap(z=c, x0=-0.5 + dx / 2, dx=dx, y0=-0.5 + dy / 2, dy=dy, colorscale="Jet", zmin=0,
                                 zmax=1, opacity=opacity, showscale=i == n,
                                 colorbar=dict(title=dict(text="relative importance (min–max per map)",
                                                          side="right"), thickness=12, tickvals=[0, 1],
                                               ticktext=["low", "high"]),
                                 hovertemplate="importance %{z:.2f}<extra></extra>"), row=1, col=i)
        _square_pixels(fig, rows, cols, row=1, col=i)
    _anchor_y_to_x(fig, n)
    fig.update_layout(title=title or None, template=_TEMPLATE, margin=dict(l=5, r=5, t=60 if title else 40, b=5),
                      height=int(max(260, min(420, 1300 / n))))
    return fig


def occlusion_figure(base: np.ndarray, occ: np.ndarray, target_label: str, opacity: float = 0.6,
                     box: tuple[int, int, int, int] | None = None) -> go.Figure:
    """Occlusion sensitivity over the network input: red where covering the image lowers ``p(target)``.

    Parameters
    ----------
    base : (H, W) or (H, W, C) float ndarray in [0, 1]
        The network input as pixels.
    occ : (H, W) float ndarray in [-1, 1]
        :func:`medimg.explain.occlusion` (drop of the calibrated probability).
    target_label : str
    opacity : float
    box : (row0, col0, row1, col1), optional
        A rectangle to outline (e.g. the region the student covers), end-exclusive.

    Returns
    -------
    plotly.graph_objects.Figure
        Symmetric diverging colour scale around 0 (white: no effect), absolute units of probability.
    """
    o = np.asarray(occ, dtype=np.float32)
    g = gray(base)
    v = float(max(np.abs(o).max(), 1e-3))
    fig = go.Figure(_base_trace(g))
    fig.add_trace(go.Heatmap(z=o, colorscale="RdBu", reversescale=True, zmin=-v, zmax=v, zmid=0, opacity=opacity,
                             colorbar=dict(title=dict(text=f"drop in p({target_label})", side="right"), thickness=12,
                                           tickformat="+.0%"),
                             hovertemplate="row %{y}, column %{x}<br>drop %{z:+.1%}<extra></extra>"))
    if box is not None:
        r0, c0, r1, c1 = box
        fig.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                      line=dict(color="#222", width=2, dash="dash"))
    _square_pixels(fig, *g.shape)
    fig.update_yaxes(scaleanchor="x")
    fig.update_layout(title=f"Occlusion: how much p({target_label}) drops when each region is hidden",
                      template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10), height=420)
    return fig


def pixels_figure(pixels: np.ndarray, title: str = "", box: tuple[int, int, int, int] | None = None,
                  height: int = 360, select: bool = False) -> go.Figure:
    """A network input drawn as its real pixels (one heat-map cell per pixel, gray), with an optional rectangle.

    Parameters
    ----------
    pixels : (H, W) or (H, W, C) float ndarray in [0, 1]
    title : str
        The size is appended (``"28 x 28 px"``).
    box : (row0, col0, row1, col1), optional
        End-exclusive rectangle to outline.
    height : int
    select : bool
        Box-select drag mode (the user draws a rectangle; the app reads the selection).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    g = gray(pixels)
    rows, cols = g.shape
    fig = go.Figure(go.Heatmap(z=g, colorscale="gray", zmin=0, zmax=1, showscale=False,
                               hovertemplate="row %{y}, column %{x}<br>value %{z:.3f}<extra></extra>"))
    if select:  # box selection needs points: one invisible marker per pixel centre
        rr, cc = np.mgrid[0:rows, 0:cols]
        fig.add_trace(go.Scatter(x=cc.ravel(), y=rr.ravel(), mode="markers", marker=dict(size=4, opacity=0),
                                 hoverinfo="skip", showlegend=False, name="pixels"))
    if box is not None:
        r0, c0, r1, c1 = box
        fig.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                      line=dict(color="#d9822b", width=3))
    _square_pixels(fig, rows, cols)
    fig.update_yaxes(scaleanchor="x")
    fig.update_layout(title=f"{title} ({rows} x {cols} px)" if title else f"{rows} x {cols} px",
                      template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10), height=height,
                      dragmode="select" if select else "zoom")
    return fig


def whatif_probabilities_figure(names: Sequence[str], labels: Sequence[str], probs: np.ndarray) -> go.Figure:
    """The calibrated probabilities of each preprocessing variant, grouped by class.

    Parameters
    ----------
    names : sequence of V str
        Variant names (the first is usually "as trained").
    labels : sequence of K str
    probs : (V, K) float ndarray in [0, 1]

    Returns
    -------
    plotly.graph_objects.Figure
    """
    p = np.asarray(probs, dtype=np.float64)
    fig = go.Figure()
    for v, name in enumerate(names):
        fig.add_trace(go.Bar(name=name, x=list(labels), y=p[v], text=[f"{x:.1%}" for x in p[v]], textposition="auto",
                             hovertemplate=f"{name}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="calibrated probability"),
                      template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10), height=320,
                      title="The same image, prepared differently", legend=dict(orientation="h", y=-0.2))
    return fig


def lab_curves_figure(history: Sequence[Mapping[str, float]]) -> go.Figure:
    """Loss and accuracy per epoch of a training-lab run (training and validation splits).

    Parameters
    ----------
    history : sequence of mapping
        One row per finished epoch with ``epoch`` and any of ``train_loss``, ``val_loss`` (mean cross-entropy,
        nats) and ``train_accuracy``, ``val_accuracy`` (fractions).

    Returns
    -------
    plotly.graph_objects.Figure
        Left: losses; right: accuracies (0..1). Empty axes when ``history`` is empty.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Cross-entropy loss", "Accuracy"], horizontal_spacing=0.1)
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    for key, name, col, dash, color in (("train_loss", "training loss", 1, None, "#1f6f8b"),
                                        ("val_loss", "validation loss", 1, "dash", "#d9822b"),
                                        ("train_accuracy", "training accuracy", 2, None, "#1f6f8b"),
                                        ("val_accuracy", "validation accuracy", 2, "dash", "#d9822b")):
        ys = [row.get(key) for row in history]
        fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=name,
                                 line=dict(dash=dash, color=color), legendgroup=name), row=1, col=col)
    last = max(epochs) if epochs else 1
    fig.update_xaxes(title="epoch", range=[0.8, max(last, 2) + 0.2], dtick=1)
    fig.update_yaxes(title="loss (nats)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title="accuracy", range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_layout(template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10), height=340,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def model_comparison_figure(rows: Sequence[Mapping[str, object]],
                            metrics: Sequence[str] = ("accuracy", "precision", "recall")) -> go.Figure:
    """Test-set metrics of several models side by side (grouped bars).

    Parameters
    ----------
    rows : sequence of mapping
        One per model: ``name`` and a value in [0, 1] (or None when not available) per metric.
    metrics : sequence of str
        Keys to plot.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    fig = go.Figure()
    for row in rows:
        ys = [row.get(m) for m in metrics]
        fig.add_trace(go.Bar(name=str(row.get("name", "")), x=list(metrics), y=ys,
                             text=[f"{y:.1%}" if isinstance(y, (int, float)) else "n/a" for y in ys],
                             textposition="auto"))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="test split"),
                      template=_TEMPLATE, margin=dict(l=10, r=10, t=40, b=10), height=340,
                      title="Same test split, three models", legend=dict(orientation="h", y=-0.2))
    return fig


# --------------------------------------------------------------------------------------------------------------
# Still images (PNG) for slides: the command line's ``medimg inside``


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    """(256, 3) uint8 colour table of a matplotlib colormap (a numpy jet when matplotlib is missing)."""
    try:
        import matplotlib

        cmap = matplotlib.colormaps[name]
        return (np.asarray(cmap(np.linspace(0, 1, 256)))[:, :3] * 255 + 0.5).astype(np.uint8)
    except (ImportError, KeyError):
        x = np.linspace(0.0, 1.0, 256)
        rgb = np.stack([np.clip(1.5 - np.abs(4 * x - k), 0, 1) for k in (3, 2, 1)], axis=1)
        return (rgb * 255 + 0.5).astype(np.uint8)


def _colour(z: np.ndarray, cmap: str) -> np.ndarray:
    """(H, W) values in [0, 1] (NaN = gap) -> (H, W, 3) uint8; gaps are white."""
    idx = np.clip(np.nan_to_num(z, nan=0.0) * 255 + 0.5, 0, 255).astype(np.uint8)
    rgb = _lut(cmap)[idx]
    rgb[np.isnan(z)] = 255
    return rgb


def _tiles_rgb(tiles: np.ndarray, per_row: int, cmap: str, min_side: int) -> np.ndarray:
    h, w = tiles.shape[1:]
    z, _ = _mosaic(tiles.astype(np.float32), per_row, max(1, round(max(h, w) / 8)))
    rgb = _colour(z, cmap)
    f = max(1, math.ceil(min_side / max(z.shape)))
    return np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)


def filters_rgb(filters: np.ndarray, per_row: int = 8, min_side: int = 512) -> np.ndarray:
    """First-layer filters as one image: a grid, red positive and blue negative (each filter scaled by its own
    largest absolute weight), every weight a square block.

    Parameters
    ----------
    filters : (F, kh, kw) float ndarray
    per_row : int
    min_side : int
        The longest side is enlarged (nearest neighbour, integer factor) to at least this many pixels.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    f = np.asarray(filters, dtype=np.float32)
    peak = np.abs(f).reshape(len(f), -1).max(axis=1)
    scaled = f / np.where(peak > 0, peak, 1.0)[:, None, None]
    return _tiles_rgb((scaled + 1) / 2, per_row, "RdBu_r", min_side)


def feature_maps_rgb(maps: np.ndarray, channels: Sequence[int] | None = None, per_row: int = 8,
                     min_side: int = 768) -> np.ndarray:
    """Feature maps as one image: a grid of channels, each min-max scaled on its own (viridis), every activation
    a square block.

    Parameters
    ----------
    maps : (C, h, w) float ndarray
    channels : sequence of int, optional
        Channels in display order (default all).
    per_row : int
    min_side : int

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    m = np.asarray(maps, dtype=np.float32)
    t = m[list(range(len(m))) if channels is None else [int(c) for c in channels]]
    lo = t.reshape(len(t), -1).min(axis=1)[:, None, None]
    span = t.reshape(len(t), -1).max(axis=1)[:, None, None] - lo
    scaled = np.where(span > 1e-12, (t - lo) / np.where(span > 1e-12, span, 1.0), 0.0)
    return _tiles_rgb(scaled, per_row, "viridis", min_side)


def cam_cells_rgb(base: np.ndarray, cells: np.ndarray, alpha: float = 0.5, min_side: int = 336) -> np.ndarray:
    """A stage's heat map on its own grid blended over the network input, both as real pixels.

    Parameters
    ----------
    base : (H, W) or (H, W, C) float ndarray in [0, 1]
        The network input as pixels.
    cells : (h, w) float ndarray in [0, 1]
        The map on the layer's grid; each cell covers ``H / h x W / w`` input pixels (nearest neighbour).
    alpha : float in [0, 1]
        Heat-map opacity.
    min_side : int

    Returns
    -------
    (H * f, W * f, 3) uint8 ndarray
    """
    g = gray(base)
    rows, cols = g.shape
    c = np.asarray(cells, dtype=np.float32)
    ri = np.minimum((np.arange(rows) * c.shape[0]) // rows, c.shape[0] - 1)
    ci = np.minimum((np.arange(cols) * c.shape[1]) // cols, c.shape[1] - 1)
    heat = _colour(c[ri][:, ci], "jet").astype(np.float32)
    under = np.repeat((np.clip(g, 0, 1) * 255)[..., None], 3, axis=2)
    rgb = ((1 - alpha) * under + alpha * heat + 0.5).astype(np.uint8)
    f = max(1, math.ceil(min_side / max(rows, cols)))
    return np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)


def strip_rgb(images: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """RGB uint8 images side by side on white, top-aligned.

    Parameters
    ----------
    images : sequence of (H_i, W_i, 3) uint8 ndarray
    gap : int
        White pixels between images.

    Returns
    -------
    (max H_i, sum W_i + gaps, 3) uint8 ndarray
    """
    h = max(im.shape[0] for im in images)
    w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    c = 0
    for im in images:
        out[: im.shape[0], c : c + im.shape[1]] = im
        c += im.shape[1] + gap
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 image as PNG, in memory."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()
