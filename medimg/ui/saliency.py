"""The saliency lab (reviewers): every CAM method on the current image, faithfulness and sanity checks, and the
expert-mask localisation over a test split.

Per-image results (the upload's grid, its checks) live in this session's ``st.session_state`` only
(:data:`STATE_KEY`), keyed by model, image, layer, class and scale. Test-set results that hold no user data (a
model's localisation over its public test split, the test-set colour scale) are shared through
``st.cache_resource``, keyed by the model's files.

The lab's image is either the session's upload (:func:`medimg.ui.session.current_upload`, shared with Analyze)
or a test-set case opened from the dashboard (:func:`open_case`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from medimg.spec import load_spec
from medimg.ui.resources import ModelOption, compute_slot, get_predictor
from medimg.ui.session import memo

if TYPE_CHECKING:  # pragma: no cover
    from medimg.explain import LocalisationReview, MethodGrid
    from medimg.io import MedicalImage
    from medimg.predict import Prediction

__all__ = ["STATE_KEY", "CASE_KEY", "LabImage", "open_case", "close_case", "current_case", "lab_image",
           "layer_options", "method_grid", "checks", "test_vmax", "localisation", "record_check", "checks_run",
           "SCALE_LABELS"]

#: ``st.session_state`` entry with this session's lab results.
STATE_KEY = "medimg.saliency"
#: ``st.session_state`` entry naming a test case opened from the dashboard: (model file name, case id, split).
CASE_KEY = "medimg.saliency.case"
#: Records of the checks run in this session (for the reviewer's report): list of dicts, numbers only.
CHECKS_KEY = "medimg.saliency.checks"
_KEEP = 8

#: Colour-scale options of the grid: label -> :func:`medimg.explain.method_grid` ``scale``.
SCALE_LABELS: dict[str, str] = {
    "Relative: min–max per map": "relative",
    "Shared across the grid": "grid",
    "Global: 99th percentile over test images": "global",
}


def _cached(kind: str, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, float, bool]:
    """The lab's per-session memo (:func:`medimg.ui.session.memo`; its keys name the image themselves)."""
    return memo(STATE_KEY, "", kind, key, compute, _KEEP)


def open_case(option: ModelOption, case_id: str, split: str = "test") -> None:
    """Make a test-set case the lab's image (from the dashboard's gallery)."""
    st.session_state[CASE_KEY] = (option.path.name, str(case_id), str(split))


def close_case() -> None:
    """Go back to the session's upload."""
    st.session_state.pop(CASE_KEY, None)


def current_case(option: ModelOption | None) -> tuple[str, str] | None:
    """(case id, split) of the open test case of this model, or None."""
    c = st.session_state.get(CASE_KEY)
    if option is None or not isinstance(c, tuple) or len(c) != 3 or c[0] != option.path.name:
        return None
    return c[1], c[2]


@dataclass(frozen=True, eq=False)
class LabImage:
    """The image the lab explains.

    Attributes
    ----------
    key : str
        Identifies the image in the session's results (``upload:<id>`` or ``case:<split>/<id>``).
    title : str
        What the page says about the image.
    image : MedicalImage
    prediction : Prediction
    true_label : str or None
        Known for test cases.
    """

    key: str
    title: str
    image: MedicalImage
    prediction: Prediction
    true_label: str | None = None


def lab_image(option: ModelOption) -> LabImage | None:
    """The open test case, else the session's upload, decoded and predicted (results reused from Analyze).

    Raises
    ------
    medimg.MedimgError
        The file cannot be read or analysed.
    """
    from medimg.ui import analysis, session

    case = current_case(option)
    if case is not None:
        case_id, split = case
        from medimg import explain as ex

        def run() -> tuple[Any, Any]:
            image = ex.load_case(option.spec, case_id, split)
            with compute_slot():
                return image, get_predictor(option.path).predict(image)

        (image, pred), _, _ = _cached("case", (str(option.path), case_id, split), run)
        report = _report(option)
        true = None
        if report is not None and case_id in report.ids:
            true = report.labels[int(report.y_true[report.ids.index(case_id)])]
        return LabImage(f"case:{split}/{case_id}", f"Test case {case_id} ({split} split)", image, pred, true)
    up = session.current_upload()
    if up is None:
        return None
    image = analysis.decode(up, None).value
    pred = analysis.predict(up, option, image, None).value
    return LabImage(f"upload:{up.upload_id}", "Your uploaded image (first frame)", image, pred)


def _report(option: ModelOption) -> Any:
    """The model's test-set report, or None when absent or unreadable (the dashboard reports why)."""
    from medimg.evaluate import EvalReport

    try:
        return EvalReport.load(option.eval_path) if option.eval_path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def layer_options(option: ModelOption) -> list[Any]:
    """The layers a CAM can target in this model (:func:`medimg.explain.cam_layers`)."""
    from medimg import explain as ex

    return ex.cam_layers(get_predictor(option.path))


def method_grid(option: ModelOption, lab: LabImage, target: int, layer: str, scale: str,
                vmax: dict[str, float] | None = None) -> tuple[MethodGrid, float, bool]:
    """Every method's map of the lab image (:func:`medimg.explain.method_grid`), kept in the session.

    Returns
    -------
    (MethodGrid, seconds, reused)
    """
    from medimg import explain as ex

    predictor = get_predictor(option.path)

    def run() -> Any:
        with compute_slot():
            return ex.method_grid(predictor, lab.prediction.preprocessed, target=target, layer=layer, scale=scale,
                                  vmax=vmax)

    key = (str(option.path), lab.key, target, layer, scale, tuple(sorted((vmax or {}).items())))
    return _cached("grid", key, run)


def checks(option: ModelOption, lab: LabImage, method: str, target: int, layer: str, heatmap: np.ndarray,
           progress: Callable[[float, str], None] | None = None) -> tuple[Any, Any, float]:
    """Faithfulness (deletion / insertion vs a random map) and the cascading randomisation sanity check of one map.

    Parameters
    ----------
    heatmap : (H, W) float ndarray
        The map from the grid (its ranking is tested).
    progress : callable, optional
        ``progress(fraction, text)``.

    Returns
    -------
    (Faithfulness, Sanity, seconds)
    """
    from medimg import explain as ex

    predictor = get_predictor(option.path)

    def run() -> tuple[Any, Any]:
        with compute_slot():
            if progress:
                progress(0.05, "Deletion and insertion: removing and restoring pixels, most salient first ...")
            f = ex.faithfulness(predictor, lab.prediction.preprocessed, heatmap, target=target)
            if progress:
                progress(0.6, "Sanity check: randomising the network from the output down to the CAM layer ...")
            s = ex.sanity_check(predictor, lab.prediction.preprocessed, method, target=target, layer=layer,
                                trained=heatmap)
            if progress:
                progress(1.0, "Done")
            return f, s

    (f, s), seconds, _ = _cached("checks", (str(option.path), lab.key, method, target, layer), run)
    return f, s, seconds


def record_check(option: ModelOption, row: dict[str, Any]) -> None:
    """Remember a check's numbers (no image) for the reviewer's report, once per identical row."""
    rows = st.session_state.setdefault(CHECKS_KEY, [])
    row = {"model": option.path.stem, **row}
    if row not in rows:
        rows.append(row)
        del rows[:-50]


def checks_run(option: ModelOption | None) -> list[dict[str, Any]]:
    """The checks recorded in this session for this model."""
    if option is None:
        return []
    return [r for r in st.session_state.get(CHECKS_KEY, []) if r.get("model") == option.path.stem]


def _stamp(option: ModelOption) -> tuple[int, int]:
    try:
        return option.path.stat().st_mtime_ns, option.path.with_suffix(".safetensors").stat().st_mtime_ns
    except OSError:
        return 0, 0


@st.cache_resource(max_entries=8, show_spinner=False)
def _test_vmax(path: str, stamp: tuple[int, int], layer: str, n: int) -> dict[str, float]:  # noqa: ARG001
    from medimg import explain as ex

    option = ModelOption(Path(path), load_spec(path))
    report = _report(option)
    if report is None or not report.ids:
        raise ex.CaseError("This model has no test-set report to take the global scale from.")
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(report.ids), size=min(n, len(report.ids)), replace=False).tolist())
    pres = ex.case_inputs(option.spec, [report.ids[i] for i in pick], report.split)
    x = np.stack([p.model_input for p in pres])
    return ex.grid_vmax(get_predictor(option.path), x, layer=layer)


def test_vmax(option: ModelOption, layer: str, n: int = 16) -> dict[str, float]:
    """Per-method 99th percentile of the raw map maxima over ``n`` test images (predicted class): the global
    colour scale. Test images only (no user data), shared between sessions.

    Raises
    ------
    medimg.explain.CaseError
        No report or the test images are not on this server.
    """
    with compute_slot(timeout=120):
        return _test_vmax(str(option.path.resolve()), _stamp(option), layer, n)


@st.cache_resource(max_entries=16, show_spinner=False)
def _localisation(path: str, stamp: tuple[int, int], method: str, layer: str,  # noqa: ARG001
                  _progress: Any = None) -> LocalisationReview:
    from medimg import explain as ex

    return ex.mask_localisation(get_predictor(path), method, layer, progress=_progress)


def localisation(option: ModelOption, method: str, layer: str,
                 progress: Callable[[float, str], None] | None = None) -> LocalisationReview:
    """Pointing game and energy inside the expert masks over the test split (public data: shared by sessions).

    Raises
    ------
    medimg.explain.CaseError
        The masks are not on this server.
    """
    with compute_slot(timeout=300):
        return _localisation(str(option.path.resolve()), _stamp(option), method, layer, progress)


def localisation_cached(option: ModelOption, method: str, layer: str) -> bool:
    """Whether :func:`localisation` has a result already (so the page can show it without a button)."""
    key = ("loc", str(option.path.resolve()), method, layer)
    return key in st.session_state.get("medimg.saliency.loc_done", set())


def mark_localisation(option: ModelOption, method: str, layer: str) -> None:
    """Note that the localisation of (model, method, layer) was computed (read by :func:`localisation_cached`)."""
    done = st.session_state.setdefault("medimg.saliency.loc_done", set())
    done.add(("loc", str(option.path.resolve()), method, layer))


def worst_gallery(option: ModelOption, review: LocalisationReview, k: int = 8
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Images (mask outlined in white), heat maps and captions of the ``k`` worst-localised test cases."""
    from medimg import explain as ex
    from medimg.catalog import read_manifest
    from medimg.explain.cases import dataset_folder
    from medimg.explain.localisation import mask_to_input
    from medimg.io import load_image

    idx = review.worst(k)
    ids = [review.ids[i] for i in idx]
    spec = option.spec
    pres = ex.case_inputs(spec, ids, review.split)
    x = np.stack([p.model_input for p in pres])
    maps = ex.cam_batch(get_predictor(option.path), x, [review.targets[i] for i in idx], method=review.method,
                        layer=review.layer)
    _, folder = dataset_folder(spec)  # type: ignore[misc]
    masks = {r["path"]: r["mask"] for r in read_manifest(folder)}
    images = []
    for cid, pre in zip(ids, pres, strict=True):
        img = np.repeat(pre.image[..., :1], 3, axis=2) if pre.image.shape[2] == 1 else pre.image.copy()
        mk = mask_to_input(load_image((folder / masks[cid]).read_bytes()).pixels, spec.preprocess)
        edge = mk & ~np.pad(mk, 1)[2:, 1:-1] | mk & ~np.pad(mk, 1)[:-2, 1:-1] | mk & ~np.pad(mk, 1)[1:-1, 2:] \
            | mk & ~np.pad(mk, 1)[1:-1, :-2]
        img[edge] = 1.0
        images.append(img)
    caps = [f"{'hit' if review.hits[i] else 'miss'}, {review.energy[i]:.0%} in mask<br>"
            f"{spec.labels[review.targets[i]]}" for i in idx]
    return images, list(maps), caps


def method_labels() -> dict[str, str]:
    """Display label -> method id, in the grid's order."""
    from medimg import explain as ex

    return {ex.METHOD_LABELS[m]: m for m in ex.GRID_METHODS}


def class_agnostic() -> frozenset[str]:
    """Method ids whose map does not depend on the class (the class picker is disabled for them)."""
    from medimg import explain as ex

    return ex.CLASS_AGNOSTIC


def masks_available(option: ModelOption) -> bool:
    """Whether the model's test split has expert lesion masks on this server (BUSI)."""
    from medimg import explain as ex

    try:
        return option.spec is not None and ex.has_masks(option.spec)
    except OSError:
        return False


def show_grid(lab: LabImage, grid: MethodGrid, seconds: float, reused: bool) -> None:
    """The method grid figure, the notes on coinciding and empty maps, and the per-method times."""
    from medimg import explain as ex
    from medimg.viz import method_grid_figure

    captions = ex.grid.grid_text(grid)
    titles = {m: f"{gm.label} · {grid.grid_label}" + (" · class-agnostic" if gm.class_agnostic else "")
              for m, gm in grid.maps.items()}
    empty = {m: f"no region raises {grid.target_label}" for m, gm in grid.maps.items() if gm.empty}
    fig = method_grid_figure(lab.prediction.preprocessed.image, {m: gm.heatmap for m, gm in grid.maps.items()},
                             titles, empty, relative=grid.scale == "relative")
    st.plotly_chart(fig, key="lab-grid")
    scale_text = {"relative": "Colours are **relative**: each map is min–max scaled on its own, so maps cannot be "
                              "compared with each other.",
                  "grid": "Colours share **one scale within each method family** (Grad-CAM, HiResCAM, XGrad-CAM "
                          "and LayerCAM are all gradient × activation); the others are each on their own maximum.",
                  "global": "Colours are on a **global scale**: each method's map divided by its 99th percentile "
                            "over 16 test images, so this image can be compared with the test set."}[grid.scale]
    st.caption(f"Class-specific maps explain **{grid.target_label}** ({grid.target_probability:.1%}) at layer "
               f"**{grid.layer}**: every map is upsampled from **{grid.grid_label}**, so detail finer than one cell "
               f"({grid.input_size[0] // grid.grid[0]} px at the model input) is interpolation. {scale_text}")
    for g in grid.groups:
        st.info(grid.group_reasons[g], icon=":material/join:")
    if empty:
        names = ", ".join(grid.maps[m].label for m in empty)
        st.warning(f"{names}: **no region raises {grid.target_label}**. The map has no positive evidence for this "
                   "class at this layer, so it is shown empty instead of stretching round-off into colours.",
                   icon=":material/block:")
    for gm in grid.maps.values():
        if gm.class_agnostic:
            st.caption(f":material/info: {gm.label} is class-agnostic: it shows the activations' main pattern, the "
                       "same whatever class is asked for.")
        if gm.note:
            st.caption(f":material/info: {gm.note}")
    with st.expander("Time per method" + (" (reused from this session)" if reused else "")):
        rows = {"Step": ["shared forward/backward pass"] + [gm.label for gm in grid.maps.values()],
                "Time": [f"{grid.seconds.get('forward/backward', 0.0) * 1000:.0f} ms"]
                + [f"{gm.seconds * 1000:.0f} ms" for gm in grid.maps.values()]}
        st.dataframe(rows, hide_index=True, width="stretch")
        st.caption(f"Whole grid: {seconds:.2f} s when computed. " + "; ".join(captions.values()))


def show_checks(option: ModelOption, lab: LabImage, grid: MethodGrid, method: str, label: str, layer: str) -> None:
    """Faithfulness and sanity of the focused method's map, on demand, with a progress bar."""
    from medimg.viz import deletion_insertion_figure, method_grid_figure

    gm = grid.maps[method]
    if gm.empty:
        st.info(f"{label} has no region that raises {grid.target_label}: there is no map to test.",
                icon=":material/block:")
        return
    key = f"lab-run-checks-{option.path.stem}-{lab.key}-{method}-{grid.target_index}-{layer}"
    done = st.session_state.get(key, False)
    if not done and not st.button(f"Run the faithfulness and sanity checks of {label}", key=key + "-btn",
                                  icon=":material/fact_check:"):
        st.caption("Deletion / insertion (Petsiuk et al. 2018) against a random map, and the cascading "
                   "model-randomisation test (Adebayo et al. 2018). A few seconds on a CPU.")
        return
    st.session_state[key] = True
    bar = st.progress(0.0, text="Starting ...")
    with ui_guard("running the checks") as g:
        f, s, seconds = checks(option, lab, method, grid.target_index, layer, gm.heatmap,
                               progress=lambda x, t: bar.progress(float(x), text=t))
    bar.empty()
    if g.failed:
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Deletion AUC (lower is better)", f"{f.deletion_auc:.3f}",
              delta=f"{f.deletion_auc - f.random_deletion_auc:+.3f} vs random map", delta_color="inverse")
    c2.metric("Insertion AUC (higher is better)", f"{f.insertion_auc:.3f}",
              delta=f"{f.insertion_auc - f.random_insertion_auc:+.3f} vs random map")
    c3.metric("Rank correlation with randomised model", "n/a" if s.passed is None else f"{s.rho:.2f}",
              help=f"Spearman correlation of this map and the map of the same network with its layers from the "
                   f"output down to {layer} re-drawn at random (cascading). At or above 0.5 the map fails.")
    (st.success if all(f.beats_random) else st.warning)(f"**Faithfulness:** {f.verdict}", icon=":material/insights:")
    if s.passed is False:
        st.error(f"**Sanity check:** {s.verdict}", icon=":material/gpp_bad:")
    elif s.passed:
        st.success(f"**Sanity check:** {s.verdict}", icon=":material/verified:")
    else:
        st.info(f"**Sanity check:** {s.verdict}")
    record_check(option, {"image": "test case" if lab.key.startswith("case:") else "uploaded image",
                          "method": label, "layer": layer, "class": grid.target_label,
                          "deletion_auc": round(f.deletion_auc, 4), "random_deletion_auc": round(f.random_deletion_auc, 4),
                          "insertion_auc": round(f.insertion_auc, 4),
                          "random_insertion_auc": round(f.random_insertion_auc, 4),
                          "sanity_rho": None if s.passed is None else round(s.rho, 4), "sanity": s.verdict,
                          "faithfulness": f.verdict})
    with st.expander("Curves and the randomised model's map"):
        st.plotly_chart(deletion_insertion_figure(f.curves, f"{label} for {grid.target_label}: deletion and insertion"),
                        key="lab-curves")
        st.plotly_chart(method_grid_figure(lab.prediction.preprocessed.image,
                                           {"trained": gm.heatmap, "randomised": s.randomised},
                                           {"trained": f"{label}: trained model",
                                            "randomised": f"{label}: layers down to {layer} randomised"},
                                           cols=2, tile_px=300), key="lab-sanity-maps")
        st.caption(f"Checks took {seconds:.1f} s when computed.")


def ui_guard(stage: str) -> Any:
    """:class:`medimg.ui.guard` that does not stop the page."""
    from medimg.ui.errors import guard

    return guard(stage, stop=False)


def show_localisation(option: ModelOption, method: str, label: str, layer: str) -> None:
    """Pointing game and energy inside the mask over the test split, beside a centre prior, and the worst cases."""
    from medimg.viz import case_gallery_figure

    if not localisation_cached(option, method, layer):
        st.caption(f"Scores {label} at {layer} on every benign and malignant test image against the expert's lesion "
                   "mask: the pointing game (is the map's maximum inside the mask; Zhang et al. 2018) and the share "
                   "of the map's energy inside it (Wang et al. 2020), beside a centred Gaussian that knows nothing "
                   "about the image.")
        if not st.button(f"Score {label} against the lesion masks", key=f"lab-loc-{option.path.stem}-{method}-{layer}",
                         icon=":material/target:"):
            return
    bar = st.progress(0.0, text="Loading test images and masks ...")
    with ui_guard("scoring the maps against the masks") as g:
        review = localisation(option, method, layer, progress=lambda x, t: bar.progress(float(x), text=t))
    bar.empty()
    if g.failed:
        return
    mark_localisation(option, method, layer)
    s, c = review.summary, review.centre
    st.dataframe({"Map": [label, "centre prior (centred Gaussian)", "chance (uniform map)"],
                  "Pointing game": [f"{s.pointing_accuracy:.3f}", f"{c.pointing_accuracy:.3f}", f"{s.chance:.3f}"],
                  "Energy inside the mask": [f"{s.energy_inside:.3f}", f"{c.energy_inside:.3f}", f"{s.chance:.3f}"],
                  "x chance (energy)": [f"{s.energy_ratio:.2f}", f"{c.energy_ratio:.2f}", "1.00"]},
                 hide_index=True, width="stretch")
    better = s.pointing_accuracy > c.pointing_accuracy and s.energy_inside > c.energy_inside
    (st.success if better else st.warning)(
        f"{label} at {layer} on {s.n} {review.split} images: "
        + ("finds the lesion better than the centre prior on both scores." if better else
           "does **not** beat a map that knows nothing but 'lesions tend to be in the middle' on both scores."),
        icon=":material/target:")
    record_check(option, {"image": f"{s.n} {review.split} images with masks", "method": label, "layer": layer,
                          "pointing_game": round(s.pointing_accuracy, 4), "energy_inside": round(s.energy_inside, 4),
                          "centre_prior_pointing": round(c.pointing_accuracy, 4),
                          "centre_prior_energy": round(c.energy_inside, 4), "chance": round(s.chance, 4)})
    with st.expander("The worst-localised cases (mask outlined in white)"):
        with ui_guard("drawing the worst cases") as g2:
            images, maps, caps = worst_gallery(option, review)
        if not g2.failed:
            st.plotly_chart(case_gallery_figure(images, maps, caps, cols=4, tile_px=220), key="lab-worst")


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """``st.page_link`` that degrades to a plain line when the page is run on its own (no navigation, e.g. in
    an AppTest of one page)."""
    from streamlit.errors import StreamlitAPIException

    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        st.caption(f"{label}: open it from the navigation.")


def switch_page(page: str) -> None:
    """``st.switch_page`` when the app's navigation knows ``page``; otherwise stay (a one-page AppTest)."""
    from streamlit.errors import StreamlitAPIException

    try:
        st.switch_page(page)
    except StreamlitAPIException:
        st.session_state["medimg.saliency.switch_failed"] = page
