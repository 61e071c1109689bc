"""The reviewers' figures: CAM method grid, deletion / insertion curves, operating point on ROC and PR curves,
the screening ROC of a multi-class model (negative vs abnormal), calibration before and after temperature scaling,
case galleries. Each returns a ``go.Figure``.

Inputs are plain arrays and dicts (no torch objects), so the figures are built the same way in the app, the
reviewer's HTML report and tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from medimg.viz.base import _MARGIN, _TEMPLATE, _png_data_uri, roc_figure, to_uint8

__all__ = ["method_grid_figure", "deletion_insertion_figure", "operating_point_figure", "per_class_roc_figure",
           "screening_roc_figure", "calibration_figure", "case_gallery_figure", "cell_from_selection", "overlay_rgb"]


def _jet(x: np.ndarray) -> np.ndarray:
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return np.stack([r, g, b], axis=-1)


def overlay_rgb(image: np.ndarray, heatmap: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """Blend a jet-coloured heat map over a grey or RGB image (numpy only).

    Parameters
    ----------
    image : (H, W), (H, W, 1) or (H, W, 3) float ndarray in [0, 1]
    heatmap : (H, W) float ndarray in [0, 1], or None for the image alone
    alpha : float in [0, 1]

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    im = np.asarray(image, dtype=np.float32)
    if im.ndim == 3 and im.shape[2] == 1:
        im = im[..., 0]
    rgb = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im
    rgb = np.clip(np.nan_to_num(rgb), 0, 1)
    if heatmap is not None:
        h = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0, 1)
        rgb = (1 - alpha) * rgb + alpha * _jet(h)
    return to_uint8(rgb)


def _grid_layout(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return (n + cols - 1) // cols, cols


def method_grid_figure(image: np.ndarray, maps: Mapping[str, np.ndarray | None], titles: Mapping[str, str],
                       empty_text: Mapping[str, str] | None = None, relative: bool = True, cols: int = 4,
                       alpha: float = 0.45, tile_px: int = 230) -> go.Figure:
    """Every method's heat map over the same image, in one grid with one colour bar.

    Parameters
    ----------
    image : (H, W), (H, W, 1) or (H, W, 3) float ndarray in [0, 1]
        The image the network saw (``Preprocessed.image``), at the maps' size.
    maps : mapping of key -> (H, W) float ndarray in [0, 1] or None
        In display order. None (or a key in ``empty_text``) draws the image alone with a message instead of a
        map: an empty map is never stretched into colours.
    titles : mapping of key -> str
        Subplot titles (method, grid size, e.g. "Grad-CAM - 4 x 4 cells").
    empty_text : mapping of key -> str, optional
        Message written over the image for empty maps ("no region raises normal").
    relative : bool
        Colour bar says "relative (min-max per map)" when True, "shared scale" otherwise.
    cols : int
    alpha : float
        Opacity of the colour map.
    tile_px : int
        Height of one row in CSS pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Image`` per map (name = key) and a hidden scatter carrying the 0-1 colour bar.
    """
    keys = list(maps)
    empty_text = dict(empty_text or {})
    rows, cols = _grid_layout(len(keys), cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[titles.get(k, k) for k in keys],
                        horizontal_spacing=0.015, vertical_spacing=0.06)
    for n, key in enumerate(keys):
        r, c = n // cols + 1, n % cols + 1
        hm = maps[key]
        empty = hm is None or key in empty_text
        rgb = overlay_rgb(image, None if empty else hm, alpha)
        if empty:
            rgb = (rgb.astype(np.float32) * 0.55 + 255 * 0.45).astype(np.uint8)  # washed out: nothing to show
        fig.add_trace(go.Image(source=_png_data_uri(rgb), name=key, hoverinfo="skip"), row=r, col=c)
        h, w = rgb.shape[:2]
        fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], row=r, col=c)
        fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor=f"x{n + 1 if n else ''}", row=r, col=c)
        if empty:
            fig.add_annotation(text=empty_text.get(key, "empty map"), x=w / 2, y=h / 2, showarrow=False,
                               font=dict(size=13, color="#222"), bgcolor="rgba(255,255,255,0.85)",
                               xref=f"x{n + 1 if n else ''}", yref=f"y{n + 1 if n else ''}")
    bar = "relative importance (min–max per map)" if relative else "importance (shared scale)"
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", name="scale",
                             marker=dict(color=[0.0, 1.0], cmin=0, cmax=1, colorscale="Jet", showscale=True,
                                         colorbar=dict(title=dict(text=bar, side="right"), thickness=12,
                                                       tickvals=[0, 0.5, 1], ticktext=["low 0", "0.5", "high 1"]))))
    fig.update_layout(height=rows * tile_px + 40, margin=dict(l=5, r=5, t=40, b=5), template=_TEMPLATE)
    return fig


def deletion_insertion_figure(curves: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    """Deletion and insertion curves of a map beside the random-map baseline (Petsiuk et al. 2018).

    Parameters
    ----------
    curves : mapping
        ``fraction`` (S,), ``deletion``, ``insertion`` and optionally ``random_deletion``,
        ``random_insertion`` (S,) class probabilities.
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        Probability vs fraction of pixels removed (deletion) or restored (insertion).
    """
    f = np.asarray(curves["fraction"], dtype=np.float64)
    fig = go.Figure()
    styles = (("deletion", "deletion (lower area = more faithful)", "#b23a48", None),
              ("insertion", "insertion (higher area = more faithful)", "#1f6f8b", None),
              ("random_deletion", "deletion, random map", "#b23a48", "dot"),
              ("random_insertion", "insertion, random map", "#1f6f8b", "dot"))
    for key, name, color, dash in styles:
        if key in curves:
            fig.add_trace(go.Scatter(x=f, y=np.asarray(curves[key], dtype=np.float64), mode="lines", name=name,
                                     line=dict(color=color, dash=dash),
                                     hovertemplate="%{x:.0%} of pixels<br>probability %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title or "Deletion and insertion", template=_TEMPLATE, margin=_MARGIN, height=320,
                      xaxis=dict(title="fraction of pixels removed / restored, most salient first", tickformat=".0%",
                                 range=[0, 1]),
                      yaxis=dict(title="probability of the class", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def operating_point_figure(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], positive_label: int,
                           threshold: float, reference: float | None = None,
                           reference_name: str = "validation-chosen threshold") -> go.Figure:
    """ROC and precision-recall curves of a binary model with the operating point at ``threshold`` marked.

    Parameters
    ----------
    y_true : (N,) int ndarray
    probs : (N, 2) float ndarray of calibrated probabilities
    labels : sequence of 2 str
    positive_label : int
    threshold : float
        The reviewer's threshold on the positive class's probability (positive when ``>=``).
    reference : float, optional
        A second threshold to mark (the spec's validation-chosen threshold, or 0.5 = argmax).
    reference_name : str

    Returns
    -------
    plotly.graph_objects.Figure
        Left: ROC (1 - specificity, sensitivity); right: PR (recall, precision). Markers: the current point
        (filled circle) and the reference (open diamond).
    """
    y = np.asarray(y_true) == positive_label
    s = np.asarray(probs, dtype=np.float64)[:, positive_label]
    from sklearn import metrics as skm  # imported when a curve is drawn: keeps the first page light

    fpr, tpr, _ = skm.roc_curve(y, s)
    prec, rec, _ = skm.precision_recall_curve(y, s)
    auc, ap = skm.auc(fpr, tpr), skm.average_precision_score(y, s)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"ROC (AUROC {auc:.3f})", f"Precision–recall (AP {ap:.3f})"),
                        horizontal_spacing=0.12)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), name="chance",
                             hoverinfo="skip", showlegend=False), row=1, col=1)
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC", line=dict(color="#1f6f8b"), showlegend=False,
                             hovertemplate="1 - specificity %{x:.3f}<br>sensitivity %{y:.3f}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=rec, y=prec, mode="lines", name="PR", line=dict(color="#1f6f8b"), showlegend=False,
                             hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"), row=1, col=2)
    fig.add_hline(y=float(y.mean()), line_dash="dot", line_color="#999", row=1, col=2,
                  annotation_text=f"prevalence {y.mean():.2f}", annotation_position="bottom left")

    def point(t: float) -> tuple[float, float, float, float]:
        called = s >= t
        tp, fp = float((called & y).sum()), float((called & ~y).sum())
        fn, tn = float((~called & y).sum()), float((~called & ~y).sum())
        sens = tp / (tp + fn) if tp + fn else float("nan")
        fp_rate = fp / (fp + tn) if fp + tn else float("nan")
        ppv = tp / (tp + fp) if tp + fp else 1.0
        return fp_rate, sens, sens, ppv

    marks = [(threshold, f"threshold {threshold:.2f}", "circle", "#d9822b", 13)]
    if reference is not None:
        marks.append((reference, f"{reference_name} {reference:.2f}", "diamond-open", "#222", 15))
    for t, name, symbol, color, size in marks:
        fx, fy, rx, ry = point(t)
        fig.add_trace(go.Scatter(x=[fx], y=[fy], mode="markers", name=name, legendgroup=name,
                                 marker=dict(symbol=symbol, color=color, size=size, line=dict(width=2, color=color)),
                                 hovertemplate=f"{name}<br>1 - specificity %{{x:.3f}}<br>sensitivity %{{y:.3f}}"
                                               "<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=[rx], y=[ry], mode="markers", name=name, legendgroup=name, showlegend=False,
                                 marker=dict(symbol=symbol, color=color, size=size, line=dict(width=2, color=color)),
                                 hovertemplate=f"{name}<br>recall %{{x:.3f}}<br>precision %{{y:.3f}}<extra></extra>"),
                      row=1, col=2)
    fig.update_xaxes(title="1 − specificity", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title="sensitivity", range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(title=f"recall (sensitivity for {labels[positive_label]})", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title="precision (PPV)", range=[0, 1.02], row=1, col=2)
    fig.update_layout(template=_TEMPLATE, margin=_MARGIN, height=400, legend=dict(orientation="h", y=-0.2))
    return fig


def per_class_roc_figure(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> go.Figure:
    """One-vs-rest ROC curve of every class of a multi-class model (AUROC per class in the legend).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    fig = roc_figure(y_true, probs, labels, None)
    fig.update_layout(title="ROC, one class vs the rest")
    return fig


def screening_roc_figure(y_abnormal: np.ndarray, score: np.ndarray, threshold: float, specificity: float = 0.95,
                         negative: str = "NILM") -> go.Figure:
    """ROC curve of the abnormal score of a screening view (negative vs any abnormal class), with its two
    operating points.

    Parameters
    ----------
    y_abnormal : (N,) bool ndarray
        True for an image of any class but the negative one.
    score : (N,) float ndarray
        The abnormal score, ``1 - P(negative)`` (:func:`medimg.screening.abnormal_score`).
    threshold : float
        The threshold fixed on the validation split (abnormal when ``score >= threshold``).
    specificity : float
        The target specificity: the line ``1 - specificity`` and the test-ROC point read off at it
        (:func:`medimg.screening.sensitivity_at_specificity`).
    negative : str
        Name of the negative class (axis and legend wording).

    Returns
    -------
    plotly.graph_objects.Figure
        The ROC (1 - specificity, sensitivity) with the AUROC in the title and an inset zoom of its low
        false-positive corner (axes ``x2``, ``y2``); in both, markers of the validation-fixed threshold applied to
        these images (filled circle) and of the best point of this ROC at the target specificity (open diamond),
        and a dotted vertical line at ``1 - specificity``.
    """
    from sklearn import metrics as skm  # imported when a curve is drawn: keeps the first page light

    from medimg.screening import sensitivity_at_specificity

    y = np.asarray(y_abnormal).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    pct = f"{specificity * 100:.0f} %"
    x_line = 1.0 - specificity
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), name="chance",
                             hoverinfo="skip", showlegend=False))
    title = f"ROC, abnormal vs {negative}"
    marks: list[tuple[float, float, str, dict[str, Any]]] = []
    if y.any() and not y.all():
        fpr, tpr, thr = skm.roc_curve(y, s)
        title += f" (AUROC {skm.auc(fpr, tpr):.3f})"
        called = s >= threshold
        marks.append((float(called[~y].mean()), float(called[y].mean()),
                      f"validation-fixed threshold {threshold:.3f}", dict(symbol="circle", color="#d9822b", size=12)))
        sens = sensitivity_at_specificity(y, s, specificity)
        ok = np.flatnonzero((fpr <= x_line + 1e-12) & (tpr >= sens))
        if ok.size:
            j = int(ok[0])
            marks.append((float(fpr[j]), float(tpr[j]), f"read off this ROC at {pct} specificity (optimistic)",
                          dict(symbol="diamond-open", color="#222", size=14, line=dict(width=2, color="#222"))))
        # the whole curve, and an inset of the low false-positive corner where screening operates
        x_zoom = max(0.15, 3 * x_line, 1.5 * max(m[0] for m in marks))
        y_lo = max(0.0, min(m[1] for m in marks) - 0.25)
        for axes, show in (("", True), ("2", False)):
            fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC", line=dict(color="#1f6f8b"),
                                     showlegend=False, customdata=np.minimum(thr, 1.0), xaxis=f"x{axes}",
                                     yaxis=f"y{axes}",
                                     hovertemplate="1 - specificity %{x:.3f}<br>sensitivity %{y:.3f}<br>"
                                                   "threshold %{customdata:.3f}<extra></extra>"))
            for mx, my, name, marker in marks:
                fig.add_trace(go.Scatter(x=[mx], y=[my], mode="markers", name=name, legendgroup=name,
                                         showlegend=show, marker=marker, xaxis=f"x{axes}", yaxis=f"y{axes}",
                                         hovertemplate=f"{name}<br>1 - specificity %{{x:.3f}}<br>sensitivity "
                                                       "%{y:.3f}<extra></extra>"))
        fig.add_shape(type="line", x0=x_line, x1=x_line, y0=y_lo, y1=1.02, xref="x2", yref="y2",
                      line=dict(dash="dot", color="#999"))
        fig.update_layout(xaxis2=dict(domain=[0.5, 0.98], anchor="y2", range=[0, x_zoom], tickfont=dict(size=9),
                                      title=dict(text="zoom: 1 − specificity", font=dict(size=10)),
                                      showline=True, linecolor="#bbb", mirror=True),
                          yaxis2=dict(domain=[0.12, 0.6], anchor="x2", range=[y_lo, 1.02], tickfont=dict(size=9),
                                      showline=True, linecolor="#bbb", mirror=True))
    fig.add_shape(type="line", x0=x_line, x1=x_line, y0=0, y1=1.02, xref="x", yref="y",
                  line=dict(dash="dot", color="#999"))
    fig.add_annotation(x=x_line, y=0.02, xref="x", yref="y", text=f"{pct} specificity", showarrow=False,
                       xanchor="left", font=dict(size=10, color="#666"))
    fig.update_layout(title=title, template=_TEMPLATE, margin=_MARGIN, height=440,
                      xaxis=dict(title=f"1 − specificity ({negative} images called abnormal)", range=[0, 1]),
                      yaxis=dict(title="sensitivity (abnormal images called abnormal)", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def calibration_figure(y_true: np.ndarray, probs_before: np.ndarray, probs_after: np.ndarray,
                       ece_before: float, ece_after: float, temperature: float | None = None,
                       n_bins: int = 15) -> go.Figure:
    """Reliability diagrams before and after temperature scaling, side by side, with ECE in each title.

    Parameters
    ----------
    y_true : (N,) int ndarray
    probs_before, probs_after : (N, K) float ndarray
        Raw softmax and temperature-scaled probabilities of the same images.
    ece_before, ece_after : float
    temperature : float, optional
        Printed in the right title.
    n_bins : int

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from medimg.evaluate import reliability_bins

    t = f" (T = {temperature:.2f})" if temperature is not None else ""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=(f"Before temperature scaling: ECE {ece_before:.3f}",
                                        f"After temperature scaling{t}: ECE {ece_after:.3f}"))
    for col, p in ((1, probs_before), (2, probs_after)):
        b = reliability_bins(y_true, p, n_bins)
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"),
                                 showlegend=col == 1, name="perfect calibration", hoverinfo="skip"), row=1, col=col)
        acc = [None if np.isnan(v) else float(v) for v in b["accuracy"]]
        fig.add_trace(go.Bar(x=b["mid"], y=acc, width=0.9 / n_bins, marker_color="#1f6f8b", opacity=0.8,
                             name="accuracy per bin", showlegend=col == 1, customdata=b["count"],
                             hovertemplate="bin %{x:.2f}<br>accuracy %{y:.3f}<br>%{customdata} images<extra></extra>"),
                      row=1, col=col)
        cf = [None if np.isnan(v) else float(v) for v in b["confidence"]]
        fig.add_trace(go.Scatter(x=cf, y=acc, mode="markers", marker_color="#d9822b", name="mean confidence",
                                 showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title="confidence (top-label probability)", range=[0, 1], row=1, col=col)
    fig.update_yaxes(title="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_layout(template=_TEMPLATE, margin=_MARGIN, height=380, bargap=0, legend=dict(orientation="h", y=-0.25))
    return fig


def case_gallery_figure(images: Sequence[np.ndarray], heatmaps: Sequence[np.ndarray | None],
                        captions: Sequence[str], cols: int = 6, alpha: float = 0.4, tile_px: int = 190) -> go.Figure:
    """A gallery of test cases: each image with its heat map (or alone when the map is None / empty).

    Parameters
    ----------
    images : sequence of (H, W) / (H, W, 3) float ndarray in [0, 1]
    heatmaps : sequence of (H, W) float ndarray in [0, 1] or None
    captions : sequence of str
        Subplot titles (e.g. "p(pneumonia) 0.97 - true normal"); HTML ``<br>`` allowed.
    cols : int
    alpha : float
    tile_px : int

    Returns
    -------
    plotly.graph_objects.Figure
    """
    n = len(images)
    if n == 0:
        fig = go.Figure()
        fig.update_layout(title="No cases", template=_TEMPLATE, height=120)
        return fig
    rows, cols = _grid_layout(n, cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(captions), horizontal_spacing=0.01,
                        vertical_spacing=0.35 / rows)
    for i, (im, hm) in enumerate(zip(images, heatmaps, strict=True)):
        r, c = i // cols + 1, i % cols + 1
        hm_ok = hm is not None and float(np.max(hm)) > 0
        rgb = overlay_rgb(im, hm if hm_ok else None, alpha)
        fig.add_trace(go.Image(source=_png_data_uri(rgb), name=str(i), hoverinfo="skip"), row=r, col=c)
        h, w = rgb.shape[:2]
        fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], row=r, col=c)
        fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor=f"x{i + 1 if i else ''}", row=r, col=c)
    for a in fig.layout.annotations:
        a.font = dict(size=10)
    fig.update_layout(height=rows * tile_px + 30, margin=dict(l=5, r=5, t=40, b=5), template=_TEMPLATE)
    return fig


def cell_from_selection(selection: Any) -> tuple[int, int] | None:
    """The confusion-matrix cell a plotly selection points at (``st.plotly_chart(..., on_select=...)``).

    Parameters
    ----------
    selection : mapping
        The chart's event or state: ``{"selection": {"points": [{"customdata": [i, j], ...}, ...]}}`` (or the
        inner ``selection`` mapping). Points come from the ``"cells"`` trace of
        :func:`medimg.viz.base.confusion_matrix_figure`.

    Returns
    -------
    (int, int) or None
        (true index, predicted index) of the last selected cell; None when nothing usable is selected.
    """
    if selection is None:
        return None
    try:
        sel = selection.get("selection", selection)
        points = sel.get("points", []) if sel is not None else []
    except AttributeError:
        return None
    for p in reversed(list(points or [])):
        cd = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(cd, (list, tuple)) and len(cd) >= 2:
            try:
                return int(cd[0]), int(cd[1])
            except (TypeError, ValueError):
                continue
    return None
