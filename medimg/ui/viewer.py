"""The Analyze page's image panel, like a PACS viewer: window/level, zoom and pan, overlays, cine, heat map beside.

- **Window/level**: presets (the header's windows first, then the CT presets), typed Window Center/Width in the
  image's units (integers for HU and stored values), and by mouse: choose *Box select* in the figure's toolbar and
  drag over a region; the window is set from that region's values (1st-99th percentile), as a PACS "region
  window" does. One window per image: it stays when the frame changes.
- **Zoom and pan**: plotly's own (scroll to zoom, drag to pan, double-click to reset); the heat map panel shares
  the image's axes, so both zoom together. The zoom survives reruns that leave the figure as it is
  (``uirevision``); Streamlit draws a changed figure as a new chart, so a new window or heat-map opacity shows
  the whole image again.
- **Heat map**: beside the image; its opacity slider reruns only the panel (a Streamlit fragment,
  :func:`medimg.ui.analysis.viewer_panel`), which replaces only the heat map's image (:func:`set_heat_image`).
- **Overlays** (60xx) drawn in yellow when the toggle is on; **Invert** (display only) for negatives.
- **Cine**: all frames of a multi-frame file (up to :data:`CINE_MAX_FRAMES`) as a plotly animation through the
  one window, with plotly's own play button.

The figure builders (:func:`panel_figure`, :func:`cine_figure`) are pure and return ``go.Figure``; the Streamlit
controls keep their state in this session under keys made of the upload id (never the file name).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from medimg.io import MedicalImage, Window
from medimg.viz import GLOBAL_SCALE_TITLE, RELATIVE_SCALE_TITLE, to_uint8

__all__ = ["empty_panel_figure", "DISPLAY_MAX_SIDE", "CINE_MAX_FRAMES", "CINE_MAX_SIDE", "OVERLAY_RGB", "ViewerSettings",
           "integral_units", "window_from_region", "format_window", "render", "panel_figure", "set_heat_image",
           "cine_figure", "window_controls", "panel_options", "show_panel", "show_cine", "show_display_warnings"]

#: Longest side, in pixels, of the image sent to the browser.
DISPLAY_MAX_SIDE = 1024
#: Most frames put in the cine figure, and their longest side.
CINE_MAX_FRAMES = 120
CINE_MAX_SIDE = 384
#: Colour of overlay planes (PACS convention: yellow).
OVERLAY_RGB = (255, 221, 0)


@dataclass(frozen=True)
class ViewerSettings:
    """What the user chose in the panel.

    Attributes
    ----------
    window : Window
        The display window, in the image's units.
    invert : bool
        Display inverted (on top of MONOCHROME1 handling); display only, the network is not affected.
    overlays : bool
        Draw the overlay planes (60xx).
    """

    window: Window
    invert: bool = False
    overlays: bool = True


def integral_units(image: MedicalImage) -> bool:
    """True when window values are whole numbers in this image's units (HU, stored values, 8/16-bit)."""
    if image.units in ("float", "rescaled value", "OD"):
        return False
    px = image.pixels
    k = max(1, int(math.isqrt(max(px.shape[0] * px.shape[1] // 4096, 1))))  # ~4,096 samples on a grid
    sample = px[::k, ::k]
    sample = sample[np.isfinite(sample)]
    return bool(sample.size == 0 or np.all(np.equal(np.mod(sample, 1), 0)))


def format_window(window: Window, image: MedicalImage) -> str:
    """``"center -600, width 1500 HU"`` (integers for integral units, else 4 significant digits)."""
    if integral_units(image):
        return f"center {round(window.center):d}, width {round(window.width):d} {image.units}"
    return f"center {window.center:.4g}, width {window.width:.4g} ({image.units})"


def window_from_region(pixels: np.ndarray, rows: tuple[float, float], cols: tuple[float, float],
                       integral: bool = True) -> Window | None:
    """The window a PACS sets from a region: the 1st to 99th percentile of the values inside it.

    Parameters
    ----------
    pixels : (H, W) float32 ndarray
        Modality values (e.g. HU).
    rows, cols : (float, float)
        The region's row and column ranges in pixel coordinates (any order; clipped to the image).
    integral : bool
        Round center and width to whole numbers.

    Returns
    -------
    Window or None
        ``name="region"``, LINEAR; None when the region holds fewer than 4 pixels.
    """
    h, w = pixels.shape[:2]
    r0, r1 = sorted(int(round(v)) for v in rows)
    c0, c1 = sorted(int(round(v)) for v in cols)
    r0, r1 = max(0, r0), min(h, r1 + 1)
    c0, c1 = max(0, c0), min(w, c1 + 1)
    region = pixels[r0:r1, c0:c1]
    region = region[np.isfinite(region)]
    if region.size < 4:
        return None
    lo, hi = (float(v) for v in np.percentile(region, [1, 99]))
    width = max(hi - lo, 1.0)
    center = lo + width / 2.0
    if integral:
        center, width = float(round(center)), float(max(round(width), 1))
    return Window(center=center, width=width, name="region", function="LINEAR")


def render(image: MedicalImage, settings: ViewerSettings, max_side: int | None = DISPLAY_MAX_SIDE) -> np.ndarray:
    """The displayed image: window (and VOI LUT), MONOCHROME1 inversion, the display-only invert, overlays.

    Parameters
    ----------
    image : MedicalImage
    settings : ViewerSettings
    max_side : int, optional
        Longest side rendered (what the browser is sent); None renders at full resolution. The image is reduced
        by whole blocks before windowing (:meth:`MedicalImage.display`), so a 6000 x 6000 radiograph never has a
        full-size display copy.

    Returns
    -------
    (h, w, 3) uint8 ndarray
        ``(ceil(H / k), ceil(W / k))`` with ``k = image.display_step(max_side)``; overlays painted in
        :data:`OVERLAY_RGB` when ``settings.overlays``. Draw it over the original extent
        (:func:`panel_figure` ``shape=image.shape[:2]``).
    """
    key = (id(image), image.frame_index, settings.window.name, float(settings.window.center),
           float(settings.window.width), settings.window.function, bool(settings.invert), bool(settings.overlays),
           max_side)
    try:
        cached = st.session_state.get(_RENDER_KEY)
    except Exception:  # noqa: BLE001 - outside a Streamlit session (library use): no cache
        cached = None
    if cached is not None and cached[0] == key and cached[1]() is image:  # same image object, same settings
        return cached[2]
    k = image.display_step(max_side)
    disp = image.display(settings.window, max_side=max_side)
    if settings.invert:
        disp = 1.0 - disp
    u8 = to_uint8(disp)
    rgb = np.repeat(u8[..., None], 3, axis=2) if u8.ndim == 2 else u8.copy()
    if settings.overlays:
        for ov in image.overlays:
            rgb[ov.mask[::k, ::k][: rgb.shape[0], : rgb.shape[1]]] = OVERLAY_RGB
    rgb.flags.writeable = False  # shared by the reruns that reuse it
    try:
        st.session_state[_RENDER_KEY] = (key, weakref.ref(image), rgb)
    except Exception:  # noqa: BLE001 - outside a Streamlit session
        pass
    return rgb


#: ``st.session_state`` entry of the last rendered display image (reruns with the same image and settings reuse it).
_RENDER_KEY = "medimg.viewer.render"
#: ``st.session_state`` entry of this session's recent PNG encodings (digest of the pixels -> data URI).
_PNG_KEY = "medimg.viewer.png"
_PNG_KEEP = 8


def _png_uri(rgb: np.ndarray, lossless: bool = True) -> str:
    """The pixels as an image data URI for the browser.

    ``lossless``: PNG, one channel when the image is gray (a third of the bytes of RGB), so the displayed image is
    exactly the windowed pixels; otherwise JPEG quality 90 (the heat-map overlay, a coloured illustration: 6-8x
    fewer bytes, ~30x faster to encode). Encodings are kept per session (at most :data:`_PNG_KEEP`), so a rerun
    that does not change a panel (a slider elsewhere, another class explained) does not encode it again.
    """
    arr = np.ascontiguousarray(rgb)
    digest = (arr.shape, str(arr.dtype), lossless, hashlib.blake2b(arr.data, digest_size=16).hexdigest())
    try:
        store = st.session_state.setdefault(_PNG_KEY, {})
    except Exception:  # noqa: BLE001 - outside a Streamlit session (library use): no cache
        store = None
    if store is not None and digest in store:
        store[digest] = store.pop(digest)  # most recent last
        return store[digest]
    uri = _encode_uri(arr, lossless)
    if store is not None:
        store[digest] = uri
        while len(store) > _PNG_KEEP:
            store.pop(next(iter(store)))
    return uri


def _encode_uri(arr: np.ndarray, lossless: bool) -> str:
    """Encode without the session's store (see :func:`_png_uri`)."""
    from PIL import Image

    buf = io.BytesIO()
    if lossless:
        gray = arr.ndim == 3 and arr.shape[2] == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and \
            np.array_equal(arr[..., 0], arr[..., 2])
        Image.fromarray(arr[..., 0] if gray else arr).save(buf, format="PNG", compress_level=1)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    Image.fromarray(arr).convert("RGB").save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    if max(rgb.shape[:2]) <= max_side:
        return rgb
    return to_uint8(rgb.astype(np.float32) / np.float32(255.0), max_side)


def panel_figure(image_rgb: np.ndarray, heat_rgb: np.ndarray | None = None, relative: bool = True,
                 image_title: str = "Image", heat_title: str = "", max_side: int = DISPLAY_MAX_SIDE,
                 height: int = 560, revision: str = "", shape: tuple[int, int] | None = None) -> go.Figure:
    """The viewer figure: the image and, when given, the heat map overlay beside it with linked zoom and pan.

    Parameters
    ----------
    image_rgb : (H, W, 3) uint8 ndarray
        The displayed image (:func:`render`).
    heat_rgb : (H, W, 3) uint8 or float [0, 1] ndarray, optional
        The heat map blended over the displayed image, on the same (H, W) grid (any size with the same aspect:
        it is drawn over the image's extent).
    relative : bool
        The heat map was min-max scaled per image: the colorbar says so (:data:`medimg.viz.RELATIVE_SCALE_TITLE`).
    image_title, heat_title : str
        Panel titles.
    max_side : int
        Longest side sent to the browser; axes stay in the original image's pixel coordinates (rows, columns).
    height : int
        CSS pixels.
    revision : str
        plotly ``uirevision``: zoom and pan are kept across reruns while it stays the same (make it the image id).
    shape : (int, int), optional
        (rows, columns) of the original image, when ``image_rgb`` was rendered smaller (the axes stay in original
        pixels); ``image_rgb.shape[:2]`` by default.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Image`` per panel (axes in original pixels: x = column, y = row, rows downwards); the heat map
        panel also carries an invisible ``go.Scatter`` whose colorbar explains the colours. ``dragmode`` is pan.
    """
    rows, cols = shape if shape is not None else image_rgb.shape[:2]
    panels = [image_rgb] if heat_rgb is None else [image_rgb, heat_rgb]
    titles = [image_title] if heat_rgb is None else [image_title, heat_title or "Heat map"]
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.03, subplot_titles=titles)
    for i, arr in enumerate(panels, start=1):
        a = np.asarray(arr)
        if a.dtype != np.uint8:
            a = to_uint8(np.clip(a.astype(np.float32), 0, 1))
        small = _shrink(a, max_side)
        dx, dy = cols / small.shape[1], rows / small.shape[0]
        fig.add_trace(go.Image(source=_png_uri(small, lossless=i == 1), x0=dx / 2 - 0.5, y0=dy / 2 - 0.5, dx=dx, dy=dy,
                               hoverinfo="x+y", name=titles[i - 1]), row=1, col=i)
    if heat_rgb is not None:
        bar = dict(title=dict(text=RELATIVE_SCALE_TITLE if relative else GLOBAL_SCALE_TITLE, side="right"),
                   thickness=12, len=0.85, tickvals=[0, 0.5, 1],
                   ticktext=["low 0", "0.5", "high 1"] if relative else ["0", "0.5", "1"])
        fig.add_trace(go.Scatter(x=[0, 0], y=[0, 0], mode="markers", hoverinfo="skip", showlegend=False,
                                 name="scale", marker=dict(size=0.001, opacity=0, color=[0.0, 1.0], cmin=0.0,
                                                           cmax=1.0, colorscale="Jet", showscale=True,
                                                           colorbar=bar)), row=1, col=2)
    for i in range(1, len(panels) + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({
            f"xaxis{suffix}": dict(range=[-0.5, cols - 0.5], showgrid=False, zeroline=False, showticklabels=False,
                                   constrain="domain", **({} if i == 1 else {"matches": "x"})),
            f"yaxis{suffix}": dict(range=[rows - 0.5, -0.5], showgrid=False, zeroline=False, showticklabels=False,
                                   scaleanchor=f"x{suffix}", constrain="domain",
                                   **({} if i == 1 else {"matches": "y"})),
        })
    fig.update_annotations(font_size=12, yshift=4)  # the panel titles, kept clear of the modebar
    fig.update_layout(height=height, margin=dict(l=4, r=4, t=64, b=4), dragmode="pan",
                      uirevision=revision or "viewer", plot_bgcolor="black", showlegend=False)
    return fig


def set_heat_image(figure: go.Figure, heat_rgb: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> go.Figure:
    """Replace the heat-map panel's image of a :func:`panel_figure` figure (what moving the opacity changes).

    The rest of the figure (the image panel and its encoding, the axes, the colour bar, the titles) is kept, so an
    opacity change costs one blend and one JPEG encoding, not a new figure.

    Parameters
    ----------
    figure : plotly.graph_objects.Figure
        Made by :func:`panel_figure` with a heat map; changed in place.
    heat_rgb : (H, W, 3) uint8 or float [0, 1] ndarray
        The new overlay (any grid with the image's aspect, like ``panel_figure``'s ``heat_rgb``).
    max_side : int

    Returns
    -------
    plotly.graph_objects.Figure
        ``figure``.

    Raises
    ------
    ValueError
        The figure has no heat-map panel.
    """
    traces = [t for t in figure.data if t.type == "image"]
    if len(traces) != 2:
        raise ValueError("the figure has no heat-map panel (panel_figure was called without heat_rgb)")
    a = np.asarray(heat_rgb)
    if a.dtype != np.uint8:
        a = to_uint8(np.clip(a.astype(np.float32), 0, 1))
    small = _shrink(a, max_side)
    rows = figure.layout.yaxis.range[0] + 0.5  # the original image's pixels (panel_figure's axes)
    cols = figure.layout.xaxis.range[1] + 0.5
    dx, dy = cols / small.shape[1], rows / small.shape[0]
    # each opacity gives a new image: encoded directly (hashing it for the session's store costs as much)
    traces[1].update(source=_encode_uri(np.ascontiguousarray(small), lossless=False), x0=dx / 2 - 0.5,
                     y0=dy / 2 - 0.5, dx=dx, dy=dy)
    return figure


def empty_panel_figure(height: int = 360) -> go.Figure:
    """The viewer's frame before an image is uploaded: a dark panel that says where the image will appear.

    Drawing it also loads the browser's plotly library while the user picks a file, so the first image and heat
    map appear as soon as the server has computed them (bench/browser_latency.py: ~1.3 s of the first result's
    wait on 2 cores was the figure library loading after the analysis had finished).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    fig = go.Figure()
    fig.add_annotation(text="The image and its heat map appear here", x=0.5, y=0.5, xref="paper", yref="paper",
                       showarrow=False, font=dict(color="#9aa7b0", size=15))
    fig.update_layout(height=height, margin=dict(l=4, r=4, t=4, b=4), plot_bgcolor="black", paper_bgcolor="black",
                      xaxis=dict(visible=False), yaxis=dict(visible=False), dragmode=False)
    return fig


def cine_figure(frames: Sequence[np.ndarray], fps: float = 8.0, height: int = 440) -> go.Figure:
    """All frames as a plotly animation with its own play/pause buttons and frame slider.

    Parameters
    ----------
    frames : sequence of (H, W, 3) uint8 ndarray
        Rendered frames, all through the same window (:func:`render`), same shape.
    fps : float
        Playback speed in frames per second.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    if not frames:
        raise ValueError("cine_figure needs at least one frame")
    rows, cols = frames[0].shape[:2]
    uris = [_png_uri(f) for f in frames]
    fig = go.Figure(go.Image(source=uris[0], hoverinfo="skip"),
                    frames=[go.Frame(data=[go.Image(source=u)], name=str(i + 1)) for i, u in enumerate(uris)])
    ms = int(1000 / max(fps, 0.5))
    fig.update_layout(
        height=height, margin=dict(l=4, r=4, t=4, b=4), plot_bgcolor="black",
        xaxis=dict(visible=False, range=[-0.5, cols - 0.5], constrain="domain"),
        yaxis=dict(visible=False, range=[rows - 0.5, -0.5], scaleanchor="x", constrain="domain"),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.02, xanchor="left", yanchor="top",
                          buttons=[dict(label="Play", method="animate",
                                        args=[None, dict(frame=dict(duration=ms, redraw=True), fromcurrent=True,
                                                         transition=dict(duration=0), mode="immediate")]),
                                   dict(label="Pause", method="animate",
                                        args=[[None], dict(frame=dict(duration=0, redraw=False),
                                                           mode="immediate")])])],
        sliders=[dict(active=0, x=0.15, len=0.85, y=-0.02, yanchor="top", currentvalue=dict(prefix="Frame "),
                      steps=[dict(label=str(i + 1), method="animate",
                                  args=[[str(i + 1)], dict(frame=dict(duration=0, redraw=True),
                                                           mode="immediate")]) for i in range(len(uris))])],
    )
    return fig


# ------------------------------------------------------------------------------------------------ Streamlit


def _keys(uid: str) -> dict[str, str]:
    base = f"viewer-{uid}"
    return {k: f"{base}-{k}" for k in ("preset", "center", "width", "invert", "overlays", "figure", "applied",
                                        "cine")}


def _presets(image: MedicalImage) -> list[Window]:
    return list(image.windows) or [image.default_window]


def _describe(w: Window, image: MedicalImage) -> str:
    kind = " (VOI LUT)" if w.lut is not None else ""
    return f"{w.name}: {format_window(w, image)}{kind}"


def _apply_preset(uid: str, image: MedicalImage) -> None:
    """Preset chosen: copy its center/width into the typed fields (a callback, before the rerun)."""
    k = _keys(uid)
    presets = _presets(image)
    i = st.session_state.get(k["preset"], 0)
    if isinstance(i, int) and 0 <= i < len(presets):
        _set_fields(uid, image, presets[i])


def _set_fields(uid: str, image: MedicalImage, w: Window) -> None:
    k = _keys(uid)
    if integral_units(image):
        st.session_state[k["center"]] = int(round(w.center))
        st.session_state[k["width"]] = int(max(round(w.width), 1))
    else:
        st.session_state[k["center"]] = float(w.center)
        st.session_state[k["width"]] = float(w.width)


def _region_selected(uid: str, pixels: np.ndarray, integral: bool) -> None:
    """Box selection in the figure: window from the region (a callback of ``st.plotly_chart``)."""
    k = _keys(uid)
    state = st.session_state.get(k["figure"])
    try:
        boxes = state["selection"]["box"]
    except (KeyError, TypeError):
        return
    if not boxes:
        return
    box = boxes[-1]
    xs, ys = box.get("x", []), box.get("y", [])
    if len(xs) < 2 or len(ys) < 2:
        return
    w = window_from_region(pixels, (min(ys), max(ys)), (min(xs), max(xs)), integral)
    if w is None:
        return
    k_center, k_width = k["center"], k["width"]
    st.session_state[k_center] = int(w.center) if integral else w.center
    st.session_state[k_width] = int(w.width) if integral else w.width
    st.session_state[k["applied"]] = "region"
    # The figure may be drawn by a fragment (the Analyze page's viewer), whose own widgets rerun only the fragment:
    # a new window changes the image, the window fields and possibly the network's input, so the page reruns.
    st.rerun()


def window_controls(image: MedicalImage, uid: str) -> Window:
    """Presets and typed Window Center / Width, one window per image (kept across frames).

    Parameters
    ----------
    image : MedicalImage
        The current frame.
    uid : str
        The upload's id (keys of this image's controls).

    Returns
    -------
    Window
        The preset itself while its values are unchanged (a VOI LUT stays a LUT), else a LINEAR window named
        ``"custom"`` (or ``"region"`` when set from a box selection), in ``image.units``.
    """
    k = _keys(uid)
    presets = _presets(image)
    if image.is_color:
        st.caption(f":material/palette: Colour image: shown as stored ({image.units}), without window/level.")
        return presets[0]
    integral = integral_units(image)
    if k["center"] not in st.session_state or k["width"] not in st.session_state:
        _set_fields(uid, image, presets[0])
    labels = [_describe(w, image) for w in presets]
    c0, c1, c2 = st.columns([5, 2, 2])
    choice = c0.selectbox("Window preset", range(len(presets)), format_func=lambda i: labels[i], key=k["preset"],
                          on_change=_apply_preset, args=(uid, image),
                          help="From the file's header (Window Center/Width (0028,1050)/(0028,1051), VOI LUT); "
                               "CT adds lung, mediastinum, bone, brain, subdural, stroke and head bone presets. The first is the default.")
    if integral:
        center = c1.number_input(f"Center ({image.units})", step=1, format="%d", key=k["center"])
        width = c2.number_input(f"Width ({image.units})", min_value=1, step=1, format="%d", key=k["width"])
    else:
        center = c1.number_input(f"Center ({image.units})", format="%.4g", key=k["center"])
        width = c2.number_input(f"Width ({image.units})", min_value=1e-6, format="%.4g", key=k["width"])
    preset = presets[choice] if 0 <= choice < len(presets) else presets[0]
    same = math.isclose(float(center), round(preset.center) if integral else preset.center, abs_tol=1e-6) and \
        math.isclose(float(width), max(round(preset.width), 1) if integral else preset.width, abs_tol=1e-6)
    if same:
        return preset
    name = "region" if st.session_state.get(k["applied"]) == "region" else "custom"
    return Window(center=float(center), width=max(float(width), 1.0 if integral else 1e-6), name=name,
                  function="LINEAR")


def panel_options(image: MedicalImage, uid: str) -> tuple[bool, bool]:
    """The Invert and Overlays toggles; returns (invert, overlays). Invert starts on for a negative rendition."""
    k = _keys(uid)
    c1, c2 = st.columns(2)
    invert = False
    if not image.is_color:
        invert = c1.toggle("Invert", value=bool(image.negative), key=k["invert"],
                           help="Display only (like a PACS invert button); the network sees the image as the "
                                "header says.")
    overlays = False
    if image.overlays:
        overlays = c2.toggle(f"Overlays ({len(image.overlays)})", value=True, key=k["overlays"],
                             help="Overlay planes (60xx) stored with the image, drawn in yellow as a PACS does.")
    return invert, overlays


def show_display_warnings(image: MedicalImage) -> None:
    """The notes that change how this image must be read, beside it (not in a collapsed panel)."""
    for msg in image.display_warnings:
        icon = ":material/badge:" if "burned" in msg.lower() or "Identifying" in msg else ":material/contrast:"
        st.warning(msg, icon=icon)


def show_panel(figure: go.Figure, uid: str, pixels: np.ndarray, integral: bool) -> None:
    """Draw the viewer figure; a box selection sets the window from the region (then the whole page reruns, also
    when the figure is drawn by a fragment)."""
    k = _keys(uid)
    on_select: Callable[[], None] = partial(_region_selected, uid, pixels, integral)
    st.plotly_chart(figure, key=k["figure"], on_select=on_select, selection_mode="box",
                    config={"scrollZoom": True, "displaylogo": False,
                            "modeBarButtonsToRemove": ["lasso2d", "autoScale2d"]})
    st.caption(":material/pan_tool: Drag to pan, scroll to zoom, double-click to reset (both panels move "
               "together). For a region window: choose *Box select* in the toolbar and drag over the tissue of "
               "interest.")


def show_cine(frames: Sequence[np.ndarray], uid: str) -> None:
    """The cine figure (see :func:`cine_figure`)."""
    st.plotly_chart(cine_figure(frames), key=_keys(uid)["cine"] + "-figure",
                    config={"displaylogo": False})
