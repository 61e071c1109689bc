"""Inside the CNN (educators): the layers, filters and feature maps, heat maps at every stage, occlusion and
preprocessing what-ifs, for the current image and the sidebar's model."""

import streamlit as st

from medimg import ui
from medimg.ui import inside

ui.page_chrome()
st.title("Inside the CNN")
st.caption("How the selected network turns the current image into an answer: its layers, what its first filters "
           "look for, what each layer responds to, where the evidence comes from at each depth, and how much the "
           "preprocessing matters.")

option = ui.selected_model()
if option is None:
    st.info("No model is available, so there is no network to look inside.", icon=":material/block:")
    st.stop()

uploaded = ui.session.upload_widget(
    "Image to look at: DICOM, PNG, JPEG or TIFF (the current image from Analyze is kept)",
    help="The file is kept in memory for this session only and never written to disk.")
prediction = image = None
if uploaded is not None:
    with ui.guard("reading the file"):
        image = ui.analysis.decode(uploaded, None).value
        frame = ui.widgets.frame_picker(image, key=f"inside-frame-{uploaded.upload_id}")
        if frame is not None and frame != image.frame_index:
            image = ui.analysis.decode(uploaded, frame).value
    with ui.guard("analysing the image"):
        prediction = ui.analysis.predict(uploaded, option, image, None).value
    st.caption(f"The network's answer for this image: **{prediction.label}** "
               f"({float(prediction.probs[prediction.label_index]):.1%}, calibrated).")
    if not prediction.gate.passed:
        ui.widgets.show_gate(prediction.gate)
        st.caption("The sections below still show what the network computes; its answer for this image should "
                   "not be trusted.")

tabs = st.tabs(["Layers", "Filters and feature maps", "Heat map at every stage", "Occlusion",
                "Preprocessing what-ifs"])
with tabs[0], ui.guard("reading the network's layers"):
    rows = inside.architecture_section(option)
with tabs[1]:
    st.subheader("First-layer filters")
    with ui.guard("reading the filters", stop=False):
        inside.filters_section(option)
if uploaded is None or prediction is None:
    for tab in tabs[1:]:
        with tab:
            st.info("Upload an image (here or on Analyze) to see what the network does with it.",
                    icon=":material/upload_file:")
    st.stop()

with tabs[1]:
    st.subheader("Feature maps of this image")
    with ui.guard("computing the feature maps", stop=False):
        inside.feature_maps_section(option, uploaded, prediction, rows)
with tabs[2], ui.guard("computing the heat maps", stop=False):
    inside.stages_section(option, uploaded, prediction, rows)
with tabs[3]:
    st.subheader("Occlusion sensitivity")
    with ui.guard("computing the occlusion map", stop=False):
        inside.occlusion_section(option, uploaded, prediction)
    st.subheader("What if this region were covered?")
    with ui.guard("covering the region", stop=False):
        inside.cover_section(option, uploaded, prediction)
with tabs[4], ui.guard("preparing the what-ifs", stop=False):
    inside.whatif_section(option, uploaded, image, prediction)
