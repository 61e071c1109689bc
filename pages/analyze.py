"""Analyze: upload one image, see how it is displayed and prepared, the calibrated prediction and its heat map."""

import streamlit as st

from medimg import ui

ui.page_chrome()
st.title("Analyze an image")

uploaded = ui.session.upload_widget(
    "Chest radiograph: DICOM, PNG, JPEG or TIFF (the type is read from the content, so any file name works)",
    help="The file is kept in memory for this session only and never written to disk.")
if uploaded is None:
    ui.analysis.clear()
    st.info("Upload an image to begin.", icon=":material/upload_file:")
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
option = ui.selected_model()

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Image")
    window = ui.widgets.window_picker(image, key=f"window-{uid}")
    display = ui.widgets.show_image(image, window, caption=f"Displayed: {window.name}, center {window.center:g}, "
                                                         f"width {window.width:g} ({image.units})")
    feed_window = st.checkbox("Let the network see this window", key=f"feed-{uid}",
                              help="By default the network sees the image through the window it was trained with.")
    if feed_window:
        st.info("The network now sees your chosen window, not the one it was trained with: its output may "
                "be less reliable.", icon=":material/tune:")

with right:
    st.subheader("Model output")
    if option is None:
        st.info("No model is available, so the image is shown without analysis.", icon=":material/block:")
        prediction, show_result = None, False
    else:
        with ui.guard("analysing the image"):
            timed = ui.analysis.predict(uploaded, option, image, window if feed_window else None)
        prediction = timed.value
        pre_s = prediction.seconds
        timings["preprocess"] = (pre_s.get("preprocess", 0.0), timed.cached)
        timings["predict"] = (pre_s.get("predict", 0.0), timed.cached)
        timings["applicability checks"] = (pre_s.get("gate", 0.0), timed.cached)
        ui.widgets.show_gate(prediction.gate)
        show_result = prediction.gate.passed or st.checkbox(
            "Analyse anyway: I have read the warnings above", key=f"anyway-{uid}-{frame}",
            help="The model may not apply to this image; the warnings stay beside the result.")
        if not show_result:
            st.info("The result is hidden until you confirm you have read the warnings.", icon=":material/visibility_off:")
        else:
            ui.widgets.show_prediction(prediction, option.spec)

if show_result:
    st.subheader("Grad-CAM: where the network looked")
    methods = ui.analysis.cam_methods()
    c1, c2, c3 = st.columns(3)
    method_label = c1.selectbox("Method", list(methods), index=0, key="cam-method")
    target = c2.selectbox("Explain class", range(len(prediction.labels)), index=prediction.label_index,
                          format_func=lambda i: prediction.labels[i], key=f"cam-target-{uid}")
    alpha = c3.slider("Heat-map opacity", 0.0, 1.0, 0.4, 0.05, key="cam-alpha")
    with ui.guard("computing the heat map", stop=False) as g:
        cam = ui.analysis.explain(uploaded, option, prediction, methods[method_label], target)
        blended = ui.analysis.overlay(display, cam.value, alpha)
    if not g.failed:
        timings["Grad-CAM"] = (cam.seconds, cam.cached)
        timings["overlay"] = (blended.seconds, False)
        cam_col, note_col = st.columns([3, 1])
        with cam_col:
            st.plotly_chart(ui.viz.heatmap_overlay_figure(blended.value, relative=cam.value.scale == "relative"),
                            key="cam-figure")
        with note_col:
            ui.widgets.show_cam_note(method_label, prediction.labels[target], prediction.gate.passed)

if prediction is not None:
    st.subheader("What the network saw")
    ui.widgets.show_steps(prediction)

with st.expander("Image information (de-identified)", expanded=prediction is None):
    ui.widgets.show_metadata(image)

with st.expander("Timings of each step"):
    ui.widgets.show_timings(timings)
