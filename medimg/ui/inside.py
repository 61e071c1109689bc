"""Inside the CNN (educators): the sections of ``pages/inside.py``, one function per tab.

Everything image-dependent is computed for the session's current image (:func:`medimg.ui.session.current_upload`)
and the sidebar's model, through :mod:`medimg.explain.teaching` (hooks only on private replicas, never on the
shared model), and kept in this session's ``st.session_state`` only (:data:`STATE_KEY`; dropped when another
file is uploaded). The layer table and the filters depend on the model alone.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from medimg import viz_teaching as vt
from medimg.io import MedicalImage, Window, full_range_window
from medimg.ui import analysis
from medimg.ui.errors import guard
from medimg.ui.resources import ModelOption, compute_slot, get_predictor
from medimg.ui.session import memo, memo_has
from medimg.viz import probability_bars

if TYPE_CHECKING:  # pragma: no cover
    from medimg.explain.teaching import LayerRow, StageCam, WhatIf
    from medimg.predict import Prediction
    from medimg.ui.session import Upload

__all__ = ["STATE_KEY", "layer_rows", "layer_table_frame", "cover_box", "network_input_caption",
           "architecture_section", "filters_section", "feature_maps_section", "stages_section",
           "occlusion_section", "cover_section", "whatif_section", "whatif_variants", "other_windows"]

#: ``st.session_state`` entry holding this session's Inside-the-CNN results for the current file.
STATE_KEY = "medimg.inside"
#: Results kept per kind for the current file.
_KEEP = 8
#: Marker of the layer whose output the heat map explains, in the layer table.
CAM_MARK = "◀ heat map"


def _cached(upload_id: str, kind: str, key: Hashable, compute: Callable[[], Any]) -> Any:
    """Per-session, per-file memo (:func:`medimg.ui.session.memo`)."""
    return memo(STATE_KEY, upload_id, kind, key, compute, _KEEP)[0]


def _digest(x: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Architecture


@st.cache_data(max_entries=16, show_spinner=False)
def _layer_rows(spec_path: str, stamp: float) -> list[LayerRow]:  # noqa: ARG001 - stamp is the cache key
    from medimg.explain.teaching import layer_table

    with compute_slot():
        return layer_table(get_predictor(spec_path))


def layer_rows(option: ModelOption) -> list[LayerRow]:
    """The selected model's layer table (:func:`medimg.explain.teaching.layer_table`), cached per model file.

    It depends on the model only (a forward pass of a zero image), so it is shared between sessions.

    Returns
    -------
    list of LayerRow
    """
    try:
        stamp = option.path.with_suffix(".safetensors").stat().st_mtime
    except OSError:
        stamp = 0.0
    return _layer_rows(str(option.path.resolve()), stamp)


def _fmt_shape(shape: Sequence[int]) -> str:
    return " x ".join(str(int(v)) for v in shape)


def _fmt_rf(row: LayerRow) -> str:
    if row.rf is None:
        return "whole image"
    r, c = row.rf
    return f"{r} x {c} px" if r != c else f"{r} px"


def layer_table_frame(rows: Sequence[LayerRow]) -> dict[str, list[Any]]:
    """Columns of the layer table as shown: layer, type, details, output (C x H x W), parameters, receptive
    field, stride, and the CAM mark.

    Parameters
    ----------
    rows : sequence of LayerRow

    Returns
    -------
    dict of str to list
        Ready for ``st.dataframe``.
    """
    return {
        "Layer": [r.name for r in rows],
        "Type": [r.kind for r in rows],
        "Details": [r.detail for r in rows],
        "Output (C x H x W)": [_fmt_shape(r.out_shape) for r in rows],
        "Parameters": [r.params for r in rows],
        "Receptive field": [_fmt_rf(r) for r in rows],
        "Stride (px)": [r.jump[0] if r.jump[0] == r.jump[1] else f"{r.jump[0]} x {r.jump[1]}" for r in rows],
        "Heat map": [CAM_MARK if r.is_cam else "" for r in rows],
    }


def architecture_section(option: ModelOption) -> list[LayerRow]:
    """The layer table with a short reading guide.

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.

    Returns
    -------
    list of LayerRow
        The rows (the feature-map and stage sections reuse them).
    """
    rows = layer_rows(option)
    total = sum(r.params for r in rows)
    spec = option.spec
    arch = spec.architecture if spec is not None else "?"
    st.markdown(f"**{arch}**: {len(rows) - 1} layers or blocks, {total:,} parameters. Input "
                f"{_fmt_shape(rows[0].out_shape)} (channels x rows x columns).")
    st.dataframe(layer_table_frame(rows), hide_index=True, width="stretch", height=min(800, 38 + 35 * len(rows)),
                 column_config={"Parameters": st.column_config.NumberColumn(format="localized"),
                                "Details": st.column_config.TextColumn(width="medium")})
    cam_rows = [r for r in rows if r.is_cam]
    cam_txt = ""
    if cam_rows and cam_rows[0].spatial:
        row = cam_rows[0]
        h, w = rows[0].out_shape[1:]
        sees = (f"can see the whole {h} x {w} input (its theoretical field, {_fmt_rf(row)}, is larger than the image)"
                if row.rf is not None and min(row.rf) >= max(h, w) else f"sees {_fmt_rf(row)} of the input")
        cam_txt = (f"The heat map is computed on the output of **{row.name}** ({_fmt_shape(row.out_shape)}): each of "
                   f"its {row.spatial[0]} x {row.spatial[1]} cells {sees}.")
    st.caption("Output shapes come from a real forward pass. **Receptive field**: how many input pixels can "
               "influence one unit of the layer (the theoretical field along the main path, Araujo et al. 2019); "
               "it grows with every convolution and pooling, until global pooling sees the whole image. "
               "**Stride**: input pixels between neighbouring units. " + cam_txt)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Filters and feature maps


def filters_section(option: ModelOption) -> None:
    """The first-layer filters as a grid (they depend on the model only).

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.
    """
    from medimg.explain.teaching import first_layer_filters

    f = first_layer_filters(get_predictor(option.path))
    st.plotly_chart(vt.filter_grid_figure(f), key="inside-filters")
    st.caption("Each square is one filter of the first convolution (its weights, averaged over the input "
               "channels): red pixels add, blue pixels subtract. Trained first layers look like edge, spot and "
               "gradient detectors; an untrained network's filters look like noise.")


def feature_maps_section(option: ModelOption, upload: Upload, prediction: Prediction,
                         rows: Sequence[LayerRow]) -> None:
    """A layer picker and that layer's feature maps for the current image, the most active channels first.

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.
    upload : medimg.ui.session.Upload
        The session's current image (its id keys the results kept in this session).
    prediction : medimg.Prediction
        The model's prediction for the image (its ``preprocessed`` input is what is shown and explained).
    rows : sequence of LayerRow
        :func:`layer_rows` of the model (the layers offered).
    """
    from medimg.explain.teaching import channel_order, feature_maps

    choices = [r for r in rows[1:] if r.spatial is not None and r.spatial[0] * r.spatial[1] > 1]
    if not choices:
        st.info("This network has no layer with 2-D feature maps.")
        return
    names = [r.name for r in choices]
    by_name = {r.name: r for r in choices}
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox("Layer", names, index=0, key=f"inside-fm-layer-{option.path.name}",
                         format_func=lambda n: f"{n} ({by_name[n].kind}, {_fmt_shape(by_name[n].out_shape)})")
    count = int(c2.number_input("Channels shown", 1, 64, 16, key="inside-fm-count"))
    x = prediction.preprocessed.model_input
    maps = _cached(upload.upload_id, "feature_maps", (str(option.path), _digest(x), layer),
                   lambda: _with_slot(lambda: feature_maps(get_predictor(option.path), x, layer)))
    order = channel_order(maps)[:count]
    st.plotly_chart(vt.feature_maps_figure(maps, order, per_row=8,
                                           title=f"{layer}: the {len(order)} most active of {len(maps)} channels "
                                                 f"({maps.shape[1]} x {maps.shape[2]} each)"),
                    key="inside-feature-maps")
    st.caption("Ordered by mean absolute activation. Early layers respond to edges and intensity changes at "
               "the pixel scale; deeper layers combine them into textures and larger parts, on coarser grids.")


def _with_slot(fn: Callable[[], Any]) -> Any:
    with compute_slot():
        return fn()


# --------------------------------------------------------------------------------------------------------------
# CAM at every stage


def stages_section(option: ModelOption, upload: Upload, prediction: Prediction, rows: Sequence[LayerRow]) -> None:
    """The heat map of one class at the end of every stage, side by side, each on its layer's own grid.

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.
    upload : medimg.ui.session.Upload
        The session's current image (its id keys the results kept in this session).
    prediction : medimg.Prediction
        The model's prediction for the image (its ``preprocessed`` input is what is shown and explained).
    rows : sequence of LayerRow
        :func:`layer_rows` of the model (where the stages end).
    """
    from medimg.explain.teaching import stage_cams

    methods = analysis.cam_methods()
    c1, c2 = st.columns(2)
    label = c1.selectbox("Method", list(methods), index=0, key="inside-stage-method")
    labels = list(prediction.labels)
    target = c2.selectbox("Explain class", range(len(labels)), index=prediction.label_index,
                          format_func=lambda i: labels[i], key=f"inside-stage-target-{upload.upload_id}")
    x = prediction.preprocessed.model_input
    stages: list[StageCam] = _cached(
        upload.upload_id, "stages", (str(option.path), _digest(x), methods[label], int(target)),
        lambda: _with_slot(lambda: stage_cams(get_predictor(option.path), x, target=int(target),
                                              method=methods[label], table=rows)))
    titles = []
    for s in stages:
        rf = "whole image" if s.rf is None else f"{s.rf[0]} px"
        titles.append(f"{s.layer}<br>{s.grid[0]} x {s.grid[1]} grid, field {rf}")
    st.plotly_chart(vt.cam_stages_figure(prediction.preprocessed.image,
                                         list(zip(titles, [s.cells for s in stages], strict=True)),
                                         input_title=f"network input<br>{x.shape[1]} x {x.shape[2]} px"),
                    key="inside-stages")
    st.caption(f"{label} for **{labels[int(target)]}** at the end of each stage, drawn on the network input "
               f"({x.shape[1]} x {x.shape[2]} px). Each coloured block is one unit of that layer's grid: early "
               "stages give fine but noisy maps, deep stages coarse maps of larger parts. Colours are relative "
               "(min–max per map).")


# --------------------------------------------------------------------------------------------------------------
# Occlusion


def occlusion_section(option: ModelOption, upload: Upload, prediction: Prediction) -> None:
    """Occlusion sensitivity with patch size and stride, run on request with a progress bar.

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.
    upload : medimg.ui.session.Upload
        The session's current image (its id keys the results kept in this session).
    prediction : medimg.Prediction
        The model's prediction for the image (its ``preprocessed`` input is what is shown and explained).
    """
    from medimg.explain.teaching import occlusion

    x = prediction.preprocessed.model_input
    h, w = x.shape[1:]
    side = min(h, w)
    labels = list(prediction.labels)
    c1, c2, c3 = st.columns(3)
    patch = int(c1.slider("Patch size (px)", 1, side, max(1, side // 4), key=f"inside-occ-patch-{side}"))
    stride = int(c2.slider("Stride (px)", 1, side, max(1, patch // 2), key=f"inside-occ-stride-{side}"))
    target = int(c3.selectbox("Class", range(len(labels)), index=prediction.label_index,
                              format_func=lambda i: labels[i], key=f"inside-occ-target-{upload.upload_id}"))
    n = (math.ceil((h - patch) / stride) + 1) * (math.ceil((w - patch) / stride) + 1)
    key = (str(option.path), _digest(x), patch, stride, target)
    have = memo_has(STATE_KEY, upload.upload_id, "occlusion", key)
    st.caption(f"{n} copies of the image, each with one {patch} x {patch} patch set to the mean intensity, go "
               "through the network; each pixel's colour is the average drop of the class probability over the "
               "patches that hid it (Zeiler & Fergus 2014).")
    if not have and not st.button("Run occlusion", key="inside-occ-run", icon=":material/grid_on:"):
        return
    bar = st.progress(0.0, text="Occluding ...")

    def run() -> np.ndarray:
        t0 = time.perf_counter()

        def tick(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Occluded {done} of {total} patches ({time.perf_counter() - t0:.1f} s)")

        with compute_slot():
            return occlusion(get_predictor(option.path), x, target=target, patch=patch, stride=stride, progress=tick)

    occ = _cached(upload.upload_id, "occlusion", key, run)
    bar.progress(1.0, text=f"Done: {n} occluded images.")
    st.plotly_chart(vt.occlusion_figure(prediction.preprocessed.image, occ, labels[target]), key="inside-occlusion")


def cover_box(selection: Any, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The rectangle spanned by a plotly box selection of pixel centres, as (row0, col0, row1, col1).

    Parameters
    ----------
    selection : mapping or None
        ``st.plotly_chart(..., on_select="rerun")`` state (``{"selection": {"points": [{"x", "y"}, ...]}}``).
    shape : (int, int)
        (rows, columns) of the network input.

    Returns
    -------
    (int, int, int, int) or None
        End-exclusive and clipped to ``shape``; None when nothing is selected.
    """
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        return None
    xs = [p.get("x") for p in points if isinstance(p, dict) and p.get("x") is not None and p.get("y") is not None]
    ys = [p.get("y") for p in points if isinstance(p, dict) and p.get("x") is not None and p.get("y") is not None]
    if not xs:
        return None
    r0, r1 = int(max(0, min(ys))), int(min(shape[0], max(ys) + 1))
    c0, c1 = int(max(0, min(xs))), int(min(shape[1], max(xs) + 1))
    return (r0, c0, r1, c1) if r1 > r0 and c1 > c0 else None


def cover_section(option: ModelOption, upload: Upload, prediction: Prediction) -> None:
    """What-if: the student covers a rectangle (drawn on the image or set with sliders) and sees the
    probabilities change.

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.
    upload : medimg.ui.session.Upload
        The session's current image (its id keys the results kept in this session).
    prediction : medimg.Prediction
        The model's prediction for the image (its ``preprocessed`` input is what is shown and explained).
    """
    from medimg.explain.teaching import occlude

    x = prediction.preprocessed.model_input
    h, w = x.shape[1:]
    rk, ck, sk, lk = "inside-cover-rows", "inside-cover-cols", "inside-cover-select", "inside-cover-applied"
    box = cover_box(st.session_state.get(sk), (h, w))
    if box is not None and box != st.session_state.get(lk):  # a new rectangle drawn on the image: move the sliders
        st.session_state[lk] = box
        st.session_state[rk] = (box[0], box[2] - 1)
        st.session_state[ck] = (box[1], box[3] - 1)
    for k, n in ((rk, h), (ck, w)):
        v = st.session_state.get(k)
        if not (isinstance(v, tuple) and len(v) == 2 and 0 <= v[0] <= v[1] < n):
            st.session_state[k] = (n // 3, max(n // 3, 2 * n // 3 - 1))
    left, right = st.columns([1, 1], gap="large")
    with left:
        rows = st.slider("Rows covered (first, last)", 0, h - 1, key=rk)
        cols = st.slider("Columns covered (first, last)", 0, w - 1, key=ck)
        box = (int(rows[0]), int(cols[0]), int(rows[1]) + 1, int(cols[1]) + 1)
        covered = np.array(prediction.preprocessed.image, dtype=np.float32, copy=True)
        covered[box[0] : box[2], box[1] : box[3]] = np.asarray(option.spec.preprocess.mean, dtype=np.float32)
        st.plotly_chart(vt.pixels_figure(covered, title="Covered network input", box=box, select=True),
                        key=sk, on_select="rerun", selection_mode="box")
        st.caption("Drag a rectangle on the image (box select) or move the sliders. The covered pixels are set to "
                   "the mean intensity the network was trained to treat as neutral.")
    with right:
        if box[2] <= box[0] or box[3] <= box[1]:
            st.info("Choose a rectangle of at least one pixel.")
            return
        with guard("covering the region", stop=False) as g:
            probs = _with_slot(lambda: occlude(get_predictor(option.path), x, box))
        if g.failed:
            return
        labels = list(prediction.labels)
        before, after = prediction.probs, probs
        st.markdown("**Probabilities: whole image → covered**")
        st.dataframe({"Class": labels, "Whole image": [f"{p:.1%}" for p in before],
                      "Covered": [f"{p:.1%}" for p in after],
                      "Change": [f"{a - b:+.1%}" for a, b in zip(after, before, strict=True)]},
                     hide_index=True, width="stretch")
        st.plotly_chart(probability_bars(dict(zip(labels, map(float, after), strict=True)),
                                         highlight=labels[int(np.argmax(after))]), key="inside-cover-probs")
        st.caption(f"Covered rows {box[0]}–{box[2] - 1}, columns {box[1]}–{box[3] - 1} of the {h} x {w} input "
                   f"({(box[2] - box[0]) * (box[3] - box[1])} pixels).")


# --------------------------------------------------------------------------------------------------------------
# Preprocessing what-ifs


def network_input_caption(wi: WhatIf, reference: WhatIf | None = None) -> str:
    """One caption for a what-if: its size, its answer and the change from the reference answer."""
    rows, cols = wi.size
    p = float(wi.probs[wi.label_index])
    txt = f"{rows} x {cols} px → **{wi.label}** ({p:.1%})"
    if reference is not None and reference is not wi:
        d = float(wi.probs[reference.label_index] - reference.probs[reference.label_index])
        txt += f"; p({reference.label}) {d:+.1%} vs as trained"
    return txt


def _size_options(trained: int) -> list[int]:
    opts = {max(8, trained // 4), max(8, trained // 2), trained * 2, min(1024, trained * 4), 224}
    return sorted(o for o in opts if o != trained and 8 <= o <= 1024)


def whatif_variants(predictor: Any, image: MedicalImage, window: Window | None, size: int | None) -> list[WhatIf]:
    """The preprocessing what-ifs of the page: as trained, another window, another input size, the other aspect
    policy, no normalisation.

    Parameters
    ----------
    predictor : medimg.Predictor
    image : MedicalImage
    window : Window, optional
        The other window (None skips that variant).
    size : int, optional
        The other input side (None skips that variant).

    Returns
    -------
    list of WhatIf
        ``"as trained"`` first; it equals the Predictor's single-view output.
    """
    from medimg.explain.teaching import what_if

    geo = predictor.spec.preprocess.geometry
    out = [what_if(predictor, image, name="as trained")]
    if window is not None:
        out.append(what_if(predictor, image, window=window, name="another window"))
    if size is not None:
        out.append(what_if(predictor, image, input_size=size, name=f"input {size} px"))
    if geo == "stretch":
        out.append(what_if(predictor, image, geometry="pad", name="aspect kept (pad)",
                           description="aspect ratio kept by zero padding (the model was trained stretched)"))
    else:
        out.append(what_if(predictor, image, geometry="stretch", name="no aspect correction",
                           description=f"stretched to the input size (the model was trained with '{geo}')"))
    out.append(what_if(predictor, image, normalise=False, name="no normalisation"))
    return out


def other_windows(image: MedicalImage) -> list[Window]:
    """Windows to try instead of the trained one: narrower and wider than the default, the full data range, and
    the file's other presets (DICOM header windows, VOI LUTs).

    Parameters
    ----------
    image : MedicalImage

    Returns
    -------
    list of Window
        Half the default width (more contrast) first; widths stay >= 1 for integer data.
    """
    base = image.default_window
    half = max(1.0, base.width / 2) if base.width >= 2 else base.width / 2
    out = [Window(center=base.center, width=half, name="half width (more contrast)"),
           Window(center=base.center, width=base.width * 2, name="double width (less contrast)"),
           full_range_window(image.pixels)]
    out += [w for w in image.windows if w != base]
    return out


def whatif_section(option: ModelOption, upload: Upload, image: MedicalImage, prediction: Prediction) -> None:
    """Preprocessing what-ifs side by side: each network input as real pixels with its size and probabilities.

    Parameters
    ----------
    option : ModelOption
        The sidebar's model.
    upload : medimg.ui.session.Upload
        The session's current image (its id keys the results kept in this session).
    image : MedicalImage
        The decoded frame.
    prediction : medimg.Prediction
        The model's prediction for the image (its ``preprocessed`` input is what is shown and explained).
    """
    predictor = get_predictor(option.path)
    pp = option.spec.preprocess
    trained = int(pp.input_size[0])
    c1, c2 = st.columns(2)
    windows = other_windows(image)
    wi_idx = c1.selectbox("Another window", range(len(windows)), index=0, key=f"inside-wi-window-{upload.upload_id}",
                          format_func=lambda i: f"{windows[i].name}: center {windows[i].center:g}, width "
                                                f"{windows[i].width:g} ({image.units})")
    window = windows[int(wi_idx)]
    opts = _size_options(trained)
    size = int(c2.select_slider("Another input size (px)", opts, value=opts[len(opts) // 2],
                                key=f"inside-wi-size-{trained}"))
    wkey = analysis.window_key(window)
    variants: list[WhatIf] = _cached(
        upload.upload_id, "whatif", (str(option.path), image.frame_index, wkey, size),
        lambda: _with_slot(lambda: whatif_variants(predictor, image, window, size)))
    ref = variants[0]
    cols = st.columns(len(variants))
    for col, wi in zip(cols, variants, strict=True):
        with col:
            st.markdown(f"**{wi.name}**")
            st.image(vt.enlarge_nearest(wi.pixels, 256), width="stretch")
            st.caption(network_input_caption(wi, ref))
            st.caption(wi.description)
    st.plotly_chart(vt.whatif_probabilities_figure([w.name for w in variants], list(ref.labels),
                                                   np.stack([w.probs for w in variants])), key="inside-whatif")
    same_geo = [w for w in variants[1:] if w.pixels.shape == ref.pixels.shape and np.array_equal(w.pixels, ref.pixels)
                and w.normalised]
    note = (" Here the aspect variant equals the trained input: the image is already square." if any(
        "aspect" in w.name for w in same_geo) else "")
    st.caption("Each image is the network input as its real pixels (enlarged by repeating pixels, never "
               "smoothed), with its size; the probabilities are calibrated single-view outputs. 'as trained' "
               f"is exactly what the Analyze page computes ({float(prediction.probs[ref.label_index]):.1%} for "
               f"{ref.label}, before test-time augmentation)." + note)
