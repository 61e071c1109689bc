"""Plotly figures for the app and reports (images, overlays, test-set figures). Every function returns a
``go.Figure`` and never shows it.

No torch and no Streamlit here: numpy, scikit-learn, Pillow and plotly only, so figures can be built in tests,
notebooks and the command line as well as in the app.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

__all__ = [
    "RELATIVE_SCALE_TITLE",
    "GLOBAL_SCALE_TITLE",
    "image_figure",
    "heatmap_overlay_figure",
    "probability_bars",
    "confusion_matrix_figure",
    "roc_figure",
    "pr_figure",
    "reliability_figure",
    "training_curves_figure",
    "steps_figure",
    "to_uint8",
]

#: Colorbar title of a heat map that is min-max scaled per image (the default of :func:`medimg.explain.cam`).
RELATIVE_SCALE_TITLE = "relative importance (min–max per image)"
#: Colorbar title of a heat map on a scale shared between images.
GLOBAL_SCALE_TITLE = "importance (global scale)"

_COLORSCALES = {"jet": "Jet", "viridis": "Viridis", "inferno": "Inferno", "magma": "Magma", "hot": "Hot",
                "turbo": "Turbo"}
_MARGIN = dict(l=10, r=10, t=40, b=10)
_TEMPLATE = "plotly_white"


def to_uint8(image: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """Display image in [0, 1] -> uint8, optionally downsampled so its longest side is ``max_side``.

    Parameters
    ----------
    image : (H, W), (H, W, 1) or (H, W, 3) float ndarray in [0, 1]
        Values outside [0, 1] are clipped; non-finite values become 0. Not modified.
    max_side : int, optional
        Longest side of the result in pixels (area-averaging downsample); no resize when None or already small.

    Returns
    -------
    (h, w) or (h, w, 3) uint8 ndarray
    """
    x = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    out = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if max_side is not None and max(out.shape[:2]) > max_side:
        rows, cols = out.shape[:2]
        scale = max_side / max(rows, cols)
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))  # PIL takes (width, height)
        out = np.asarray(Image.fromarray(out).resize(size, Image.Resampling.BOX))
    return out


def _png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rgb(image: np.ndarray, max_side: int | None) -> np.ndarray:
    u8 = to_uint8(image, max_side)
    return np.repeat(u8[..., None], 3, axis=2) if u8.ndim == 2 else u8


def _image_axes(fig: go.Figure, rows: int, cols: int) -> None:
    fig.update_xaxes(visible=False, range=[-0.5, cols - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[rows - 0.5, -0.5], scaleanchor="x", constrain="domain")


def image_figure(image: np.ndarray, title: str = "", max_side: int | None = 1024, height: int = 520) -> go.Figure:
    """A display image as a plotly figure (rows down, columns across, no axes).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) float ndarray in [0, 1]
        Not modified.
    title : str
    max_side : int, optional
        Downsample for display so the longest side is at most this many pixels.
    height : int
        Figure height in CSS pixels.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    rgb = _rgb(image, max_side)
    rows, cols = rgb.shape[:2]
    fig = go.Figure(go.Image(source=_png_data_uri(rgb), hoverinfo="skip"))
    _image_axes(fig, rows, cols)
    fig.update_layout(title=title or None, margin=_MARGIN, height=height, template=_TEMPLATE)
    return fig


def heatmap_overlay_figure(overlay_rgb: np.ndarray, colormap: str = "jet", relative: bool = True,
                           title: str = "", max_side: int | None = 1024, height: int = 560) -> go.Figure:
    """A heat-map overlay with a colorbar that says what the colours mean.

    Parameters
    ----------
    overlay_rgb : (H, W, 3) float ndarray in [0, 1]
        The blended image (e.g. :func:`medimg.explain.overlay` of the display image and the heat map at the
        original image size). Not modified.
    colormap : str
        Colormap used for the blend (``"jet"`` ...); the colorbar uses the same one.
    relative : bool
        True (default) when the heat map was min-max scaled per image: the colorbar is titled
        :data:`RELATIVE_SCALE_TITLE` and labelled "low"/"high" rather than absolute numbers.
    title : str
    max_side : int, optional
        Downsample for display so the longest side is at most this many pixels.
    height : int
        Figure height in CSS pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        A ``go.Image`` trace and an invisible ``go.Scatter`` carrying the colorbar (0 to 1).
    """
    rgb = _rgb(overlay_rgb, max_side)
    rows, cols = rgb.shape[:2]
    scale = _COLORSCALES.get(colormap.lower(), "Jet")
    bar_title = RELATIVE_SCALE_TITLE if relative else GLOBAL_SCALE_TITLE
    colorbar = dict(title=dict(text=bar_title, side="right"), thickness=14, len=0.9,
                    tickvals=[0, 0.5, 1], ticktext=["low 0", "0.5", "high 1"] if relative else ["0", "0.5", "1"])
    fig = go.Figure(go.Image(source=_png_data_uri(rgb), hoverinfo="skip", name="overlay"))
    fig.add_trace(go.Scatter(x=[0, 0], y=[0, 0], mode="markers", hoverinfo="skip", showlegend=False, name="scale",
                             marker=dict(size=0.001, opacity=0, color=[0.0, 1.0], cmin=0.0, cmax=1.0,
                                         colorscale=scale, showscale=True, colorbar=colorbar)))
    _image_axes(fig, rows, cols)
    fig.update_layout(title=title or None, margin=dict(l=10, r=10, t=40 if title else 10, b=10), height=height,
                      template=_TEMPLATE)
    return fig


def probability_bars(probabilities: Mapping[str, float], highlight: str | None = None,
                     threshold: float | None = None, threshold_label: str | None = None) -> go.Figure:
    """Horizontal bars of calibrated class probabilities.

    Parameters
    ----------
    probabilities : mapping of label -> float in [0, 1]
        In the model's label order.
    highlight : str, optional
        The predicted label, drawn in the accent colour.
    threshold : float, optional
        Decision threshold on ``threshold_label``'s probability, drawn as a dashed line.
    threshold_label : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
    """
    labels = list(probabilities)
    values = [float(probabilities[k]) for k in labels]
    colors = ["#1f6f8b" if k == highlight else "#9fb7c4" for k in labels]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colors,
                           text=[f"{v:.1%}" for v in values], textposition="auto",
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="#555",
                      annotation_text=f"threshold {threshold:.2f}" + (f" ({threshold_label})" if threshold_label else ""),
                      annotation_position="top")
    fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%", title="calibrated probability"),
                      yaxis=dict(autorange="reversed"), margin=_MARGIN, template=_TEMPLATE,
                      height=max(160, 60 + 40 * len(labels)))
    return fig


def confusion_matrix_figure(cm: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[str],
                            normalise: bool = False, clickable: bool = True,
                            selected: tuple[int, int] | None = None) -> go.Figure:
    """Confusion matrix heat map, rows = true label, columns = predicted label.

    Parameters
    ----------
    cm : (K, K) array-like of counts
    labels : sequence of K str
    normalise : bool
        Show each row divided by its total (the per-class recall on the diagonal) instead of counts.
    clickable : bool
        Add one transparent marker per cell (trace ``"cells"``, ``customdata`` = [true index, predicted index])
        so a click selects the cell (plotly heat maps themselves cannot be selected; ``st.plotly_chart(...,
        on_select="rerun", selection_mode="points")`` reports the marker, see
        :func:`medimg.viz.review.cell_from_selection`).
    selected : (int, int), optional
        (true, predicted) cell to outline.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    counts = np.asarray(cm, dtype=np.float64)
    k = counts.shape[0]
    if normalise:
        totals = counts.sum(axis=1, keepdims=True)
        z = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        text = [[f"{z[i, j]:.1%}<br>({int(counts[i, j])})" for j in range(z.shape[1])] for i in range(z.shape[0])]
        ztitle = "row fraction"
    else:
        z = counts
        text = [[f"{int(counts[i, j])}" for j in range(z.shape[1])] for i in range(z.shape[0])]
        ztitle = "images"
    fig = go.Figure(go.Heatmap(z=z, x=list(labels), y=list(labels), text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1 if normalise else None,
                               colorbar=dict(title=ztitle),
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    if clickable:
        ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        fig.add_trace(go.Scatter(
            x=[labels[j] for j in jj.ravel()], y=[labels[i] for i in ii.ravel()], mode="markers", name="cells",
            customdata=np.stack([ii.ravel(), jj.ravel()], axis=1).tolist(), showlegend=False,
            marker=dict(symbol="square", size=max(24, 180 // max(k, 1)), color="rgba(0,0,0,0.01)"),
            hovertemplate="true %{y}<br>predicted %{x}<br>click to open these cases<extra></extra>"))
    if selected is not None:
        i, j = selected
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="#d9822b", width=4))
    fig.update_layout(xaxis=dict(title="predicted", side="bottom"), yaxis=dict(title="true", autorange="reversed"),
                      margin=_MARGIN, template=_TEMPLATE, height=380, clickmode="event+select",
                      title="Confusion matrix" + (" (row-normalised)" if normalise else " (counts)")
                      + (": click a cell" if clickable else ""))
    return fig


def _binary_target(y_true: np.ndarray, probs: np.ndarray, positive: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true) == positive
    p = np.asarray(probs, dtype=np.float64)
    score = p[:, positive] if p.ndim == 2 else p
    return y, score


def _one_vs_rest(labels: Sequence[str], positive_label: int | None, k: int) -> list[int]:
    if k == 2:
        return [1 if positive_label is None else int(positive_label)]
    return list(range(k))


def roc_figure(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
               positive_label: int | None = None, ci: tuple[float, float] | None = None) -> go.Figure:
    """ROC curve(s) with AUROC in the legend (scikit-learn ``roc_curve``).

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices
    probs : (N, K) float ndarray of calibrated probabilities
    labels : sequence of K str
    positive_label : int, optional
        For K = 2, the positive class (default 1). For K > 2 one-vs-rest curves are drawn for every class.
    ci : (float, float), optional
        95 % CI of the AUROC, added to the title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    probs = np.asarray(probs, dtype=np.float64)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"),
                             name="chance", hoverinfo="skip"))
    aucs = []
    from sklearn import metrics as skm  # imported when a curve is drawn: keeps the first page light

    for c in _one_vs_rest(labels, positive_label, probs.shape[1]):
        y, s = _binary_target(y_true, probs, c)
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = skm.roc_curve(y, s)
        auc = skm.auc(fpr, tpr)
        aucs.append(auc)
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{labels[c]} (AUROC {auc:.3f})",
                                 hovertemplate="1 - specificity %{x:.3f}<br>sensitivity %{y:.3f}<extra></extra>"))
    title = "ROC curve"
    if len(aucs) == 1:
        title += f": AUROC {aucs[0]:.3f}" + (f" (95 % CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
    fig.update_layout(title=title, xaxis=dict(title="1 − specificity (false-positive rate)", range=[0, 1]),
                      yaxis=dict(title="sensitivity (true-positive rate)", range=[0, 1.02]),
                      margin=_MARGIN, template=_TEMPLATE, height=400, legend=dict(x=0.45, y=0.05))
    return fig


def pr_figure(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
              positive_label: int | None = None) -> go.Figure:
    """Precision-recall curve(s) with average precision, and the prevalence as the no-skill line.

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices
    probs : (N, K) float ndarray of calibrated probabilities
    labels : sequence of K str
    positive_label : int, optional
        For K = 2, the positive class (default 1); one-vs-rest for K > 2.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    probs = np.asarray(probs, dtype=np.float64)
    fig = go.Figure()
    from sklearn import metrics as skm  # imported when a curve is drawn: keeps the first page light

    for c in _one_vs_rest(labels, positive_label, probs.shape[1]):
        y, s = _binary_target(y_true, probs, c)
        if not y.any():
            continue
        precision, recall, _ = skm.precision_recall_curve(y, s)
        ap = skm.average_precision_score(y, s)
        binary = probs.shape[1] == 2
        name = f"{labels[c]} (AP {ap:.3f})" if binary else f"{labels[c]} (AP {ap:.3f}, prevalence {y.mean():.2f})"
        fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name=name, legendgroup=str(c),
                                 hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"))
        if binary:
            fig.add_hline(y=float(y.mean()), line_dash="dot", line_color="#999",
                          annotation_text=f"prevalence {y.mean():.2f} (no skill)", annotation_position="bottom left")
        else:  # one unlabelled no-skill line per class, in the legend entry's group (labels would pile up)
            fig.add_trace(go.Scatter(x=[0, 1], y=[float(y.mean())] * 2, mode="lines", legendgroup=str(c),
                                     showlegend=False, line=dict(dash="dot", width=1),
                                     hovertemplate=f"{labels[c]}: prevalence {y.mean():.2f} (no skill)<extra></extra>"))
    fig.update_layout(title="Precision–recall curve", xaxis=dict(title="recall (sensitivity)", range=[0, 1]),
                      yaxis=dict(title="precision (PPV)", range=[0, 1.02]), margin=_MARGIN, template=_TEMPLATE,
                      height=400, legend=dict(x=0.02, y=0.05))
    return fig


def reliability_figure(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15,
                       ece: float | None = None) -> go.Figure:
    """Reliability diagram of the top-label confidence (equal-width bins) with ECE, and the bin counts.

    Parameters
    ----------
    y_true : (N,) int ndarray of label indices
    probs : (N, K) float ndarray of calibrated probabilities
    n_bins : int
        Bins as in :func:`medimg.evaluate.expected_calibration_error`.
    ece : float, optional
        Expected calibration error to print in the title (computed by the caller's report).

    Returns
    -------
    plotly.graph_objects.Figure
        Top: accuracy vs mean confidence per bin and the diagonal; bottom: images per bin.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    mids, accs, confs, counts = [], [], [], []
    for b in range(n_bins):
        m = idx == b
        mids.append((edges[b] + edges[b + 1]) / 2)
        counts.append(int(m.sum()))
        accs.append(float(correct[m].mean()) if m.any() else None)
        confs.append(float(conf[m].mean()) if m.any() else None)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"),
                             name="perfect calibration", hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Bar(x=mids, y=accs, width=1.0 / n_bins * 0.9, name="accuracy", marker_color="#1f6f8b",
                         opacity=0.8, hovertemplate="bin %{x:.2f}<br>accuracy %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=confs, y=accs, mode="markers", name="mean confidence", marker_color="#d9822b",
                             hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=mids, y=counts, width=1.0 / n_bins * 0.9, name="images", marker_color="#9fb7c4",
                         showlegend=False, hovertemplate="bin %{x:.2f}<br>%{y} images<extra></extra>"), row=2, col=1)
    fig.update_xaxes(range=[0, 1], row=1, col=1)
    fig.update_xaxes(range=[0, 1], title="confidence (top-label probability)", row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], title="accuracy", row=1, col=1)
    fig.update_yaxes(title="images", row=2, col=1)
    title = "Reliability diagram" + (f": ECE {ece:.3f}" if ece is not None else "")
    fig.update_layout(title=title, margin=_MARGIN, template=_TEMPLATE, height=460, legend=dict(x=0.02, y=0.98),
                      bargap=0)
    return fig


def training_curves_figure(history: Sequence[Mapping[str, float]], best_epoch: int | None = None) -> go.Figure:
    """Loss and validation metrics per epoch from a training log.

    Parameters
    ----------
    history : sequence of mapping
        One row per epoch with ``epoch`` and any of ``train_loss``, ``val_loss``, ``val_auroc``,
        ``val_accuracy`` (the ``history`` of ``<name>.log.json``).
    best_epoch : int, optional
        The epoch whose weights were kept (``spec.training["best_epoch"]``), drawn as a labelled line.

    Returns
    -------
    plotly.graph_objects.Figure
        Losses on the left axis, validation AUROC / accuracy on the right.
    """
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key, name, secondary, dash in (("train_loss", "train loss", False, None), ("val_loss", "validation loss", False, "dash"),
                                       ("val_auroc", "validation AUROC", True, None),
                                       ("val_accuracy", "validation accuracy", True, "dot")):
        ys = [row.get(key) for row in history]
        if any(v is not None for v in ys):
            fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=name, line=dict(dash=dash)),
                          secondary_y=secondary)
    if best_epoch is not None:
        fig.add_vline(x=best_epoch, line_dash="dash", line_color="#d9822b",
                      annotation_text=f"checkpoint kept (epoch {best_epoch})", annotation_position="top left")
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="loss", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title="AUROC / accuracy", secondary_y=True, range=[0, 1.02], tickmode="array",
                     tickvals=[0, 0.25, 0.5, 0.75, 1.0], showgrid=False)
    fig.update_layout(title="Training log" + (f": checkpoint from epoch {best_epoch}" if best_epoch else ""),
                      margin=_MARGIN, template=_TEMPLATE, height=380,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


def steps_figure(images: Sequence[np.ndarray], titles: Sequence[str], max_side: int = 256) -> go.Figure:
    """A strip of images side by side (e.g. the preprocessing steps).

    Parameters
    ----------
    images : sequence of (H, W), (H, W, 1) or (H, W, 3) float ndarray in [0, 1]
        Values outside [0, 1] are clipped, so min-max scale unbounded images (the normalised input) first.
    titles : sequence of str, same length
    max_side : int
        Each image is downsampled to at most this many pixels on its longest side.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    n = len(images)
    fig = make_subplots(rows=1, cols=max(n, 1), subplot_titles=list(titles), horizontal_spacing=0.02)
    for i, im in enumerate(images, start=1):
        rgb = _rgb(im, max_side)
        fig.add_trace(go.Image(source=_png_data_uri(rgb), hoverinfo="skip"), row=1, col=i)
        fig.update_xaxes(visible=False, row=1, col=i)
        fig.update_yaxes(visible=False, scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)
    fig.update_layout(margin=dict(l=5, r=5, t=40, b=5), height=260, template=_TEMPLATE)
    return fig
