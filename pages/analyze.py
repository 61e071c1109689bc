"""Analyze: upload one image, read it in a viewer, see how it is prepared, the calibrated prediction and its heat map."""

import streamlit as st

from medimg import ui

ui.page_chrome()
st.title("Analyze an image")

option = ui.selected_model()
uploaded = ui.session.upload_widget(
    ui.analysis.upload_label(option),
    help="The file is kept in memory for this session only (across pages) and never written to disk.")
if uploaded is None:
    ui.analysis.clear()
    st.info("Upload an image to begin.", icon=":material/upload_file:")
    st.plotly_chart(ui.viewer.empty_panel_figure(), key="viewer-empty", config={"displayModeBar": False})
    st.stop()

uid = uploaded.upload_id
with ui.guard("reading the file"):
    first = ui.analysis.decode(uploaded, None)
frame = ui.widgets.frame_picker(first.value, key=f"frame-{uid}")
decoded = first
if frame is not None and frame != first.value.frame_index:
    with ui.guard("reading the frame"):
        decoded = ui.analysis.decode(uploaded, frame)
image = decoded.value
timings = {"decode": (decoded.seconds, decoded.cached)}

ui.viewer.show_display_warnings(image)
ui.widgets.show_model_suggestion(image, option)

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Image")
    window = ui.viewer.window_controls(image, uid)
    invert, overlays = ui.viewer.panel_options(image, uid)
    settings = ui.viewer.ViewerSettings(window=window, invert=invert, overlays=overlays)
    rendered = ui.viewer.render(image, settings)
    panel_slot = st.container()
    feed_window = False
    if not image.is_color:
        feed_window = st.checkbox("Let the network see this window",
                                  key=ui.analysis.state_key("feed", option, uploaded, frame),
                                  help="By default the network sees the image through the window it was trained "
                                       "with.")
    if feed_window:
        st.info("The network now sees your chosen window, not the one it was trained with: its output may "
                "be less reliable.", icon=":material/tune:")

with right:
    st.subheader("Model output")
    header_checks: tuple = ()
    if option is None:
        st.info("No model is available, so the image is shown without analysis.", icon=":material/block:")
        prediction, show_result = None, False
    else:
        with st.spinner("Loading the model and analysing the image ..."), ui.guard("analysing the image"):
            timed = ui.analysis.predict(uploaded, option, image, window if feed_window else None)
        prediction = timed.value
        pre_s = prediction.seconds
        timings["preprocess"] = (pre_s.get("preprocess", 0.0), timed.cached)
        timings["predict"] = (pre_s.get("predict", 0.0), timed.cached)
        timings["applicability checks"] = (pre_s.get("gate", 0.0), timed.cached)
        header_checks = ui.widgets.header_checks_for(image, option, prediction)
        ui.widgets.show_gate(prediction.gate, header_checks)
        show_result = ui.widgets.confirm_warnings(option, uploaded, frame, prediction.gate, header_checks)
        if show_result:
            show_result = ui.widgets.read_first(option, uploaded, frame, prediction)
        if show_result:
            stability_slot = ui.widgets.show_prediction(prediction, option.spec)
            ui.widgets.show_agreement(ui.analysis.read_for(option, uploaded, frame))

heat, report_heat = None, None
if show_result:
    st.subheader("Grad-CAM: where the network looked")
    methods = ui.analysis.cam_methods()
    c1, c2 = st.columns(2)
    method_label = c1.selectbox("Method", list(methods), index=0, key="cam-method")
    agnostic = methods[method_label] in ui.saliency.class_agnostic()
    target = c2.selectbox("Explain class", range(len(prediction.labels)), index=prediction.label_index,
                          format_func=lambda i: prediction.labels[i], disabled=agnostic,
                          help=f"{method_label} is class-agnostic: its map is the same for every class." if agnostic
                          else None, key=ui.analysis.state_key("cam-target", option, uploaded, frame))
    with ui.guard("computing the heat map", stop=False) as g:
        cam = ui.analysis.explain(uploaded, option, prediction, methods[method_label], target)
        base = ui.analysis.overlay_base_for(uploaded, rendered, cam.value)
    if not g.failed:
        timings["Grad-CAM"] = (cam.seconds, cam.cached)
        timings["overlay"] = (base.seconds, base.cached)
        empty = bool(getattr(cam.value, "empty", False))
        target_label = "every class" if agnostic else prediction.labels[target]
        if not empty:
            heat = ui.analysis.HeatLayer(base.value, cam.value.scale == "relative", method_label, target_label)
            # the report's heat map: the viewer panel puts in the overlay it draws (again whenever the opacity
            # slider, which reruns the panel alone, moves)
            report_heat = [None, heat.relative, (method_label, target_label)]
        ui.widgets.show_cam_note(method_label, prediction.labels[target], prediction.gate.passed, empty=empty,
                                 class_agnostic=agnostic, grid=getattr(cam.value, "grid", None))

with panel_slot:
    ui.analysis.viewer_panel(rendered, heat, uid=uid, shape=image.shape[:2], pixels=image.pixels,
                             integral=ui.viewer.integral_units(image), report_heat=report_heat,
                             image_title=f"{window.name}: {ui.viewer.format_window(window, image)}")
    if image.n_frames > 1 and st.toggle("Cine: play all frames through this window", key=f"cine-{uid}"):
        with ui.guard("reading the frames", stop=False):
            ui.viewer.show_cine(ui.analysis.cine_frames(uploaded, image.n_frames, settings), uid)

if show_result:  # the stability under test-time augmentation, once the result and heat map are drawn
    with ui.guard("checking the stability", stop=False):
        stable = ui.analysis.stability(uploaded, option, prediction)
        if stable.value is not None:  # the model has test-time augmentation views
            timings["stability (TTA)"] = (stable.seconds, stable.cached)
            prediction = ui.analysis.with_uncertainty(prediction, stable.value)
            ui.widgets.show_uncertainty(prediction, stability_slot)

if prediction is not None:
    st.subheader("What the network saw")
    ui.widgets.show_steps(prediction)

with st.expander("Image information (de-identified)", expanded=prediction is None):
    ui.widgets.show_metadata(image)

with st.expander("Timings of each step"):
    ui.widgets.show_timings(timings)

if show_result:
    ui.widgets.report_downloads(uploaded, option, image, settings, prediction, header_checks, report_heat,
                                timings)

ui.widgets.show_reads_table()
