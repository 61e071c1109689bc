"""Saliency lab (reviewers): every CAM method on the current image, their faithfulness and sanity, and, where the
data set has expert masks, how often each method points at the lesion."""

import streamlit as st

from medimg import ui

ui.page_chrome()
st.title("Saliency lab")
st.caption("Can these heat maps be trusted? Every CAM method on the same image and layer, whether each map is "
           "faithful to the model (deletion / insertion), whether it depends on the trained weights at all "
           "(randomisation sanity check), and, where experts drew lesion masks, whether it points at the lesion.")

option = ui.selected_model()
if option is None:
    st.info("No model is available.", icon=":material/folder_off:")
    st.stop()

with ui.guard("opening the image"):
    lab = ui.saliency.lab_image(option)
if lab is None:
    st.info("Upload an image on **Analyze** first: it stays in this session, and the lab explains the same image.",
            icon=":material/upload_file:")
    ui.saliency.page_link("pages/analyze.py", label="Go to Analyze", icon=":material/image_search:")
    st.stop()

pred = lab.prediction
labels = list(pred.labels)
head = f"**{lab.title}** with **{option.title}**: model output **{pred.label}** ({pred.probs[pred.label_index]:.1%})"
if lab.true_label is not None:
    head += f"; true class **{lab.true_label}**"
st.markdown(head + ".")
if ui.saliency.current_case(option) is not None and st.button("Back to my uploaded image", key="lab-close-case",
                                                                icon=":material/undo:"):
    ui.saliency.close_case()
    st.rerun()
if not pred.gate.passed:
    st.warning("The applicability checks failed for this image (" + "; ".join(c.reason for c in pred.gate.failures)
               + "). The maps explain a model that may not apply to it.", icon=":material/report:")

methods = ui.saliency.method_labels()
layers = ui.saliency.layer_options(option)
default_layer = next((i for i, lo in enumerate(layers) if lo.default), len(layers) - 1)
c1, c2, c3, c4 = st.columns([2, 2, 3, 3])
focus = c1.selectbox("Method for the checks", list(methods), key=f"lab-focus-{option.path.stem}",
                     help="The faithfulness and sanity checks below test this method's map.")
agnostic = methods[focus] in ui.saliency.class_agnostic()
target = c2.selectbox("Explain class", range(len(labels)), index=pred.label_index, format_func=lambda i: labels[i],
                      key=f"lab-target-{option.path.stem}-{lab.key}", disabled=agnostic,
                      help=(f"{focus} is class-agnostic: its map is the same for every class."
                            if agnostic else "The class whose evidence the class-specific maps show."))
layer_i = c3.selectbox("Layer", range(len(layers)), index=default_layer, format_func=lambda i: layers[i].label,
                       key=f"lab-layer-{option.path.stem}",
                       help="Earlier layers give finer grids but less class-specific maps.")
scale_label = c4.radio("Colour scale", list(ui.saliency.SCALE_LABELS), index=0, key="lab-scale",
                       help="Relative maps cannot be compared with each other; a shared or global scale can.")
layer = layers[layer_i].name
scale = ui.saliency.SCALE_LABELS[scale_label]

vmax = None
if scale == "global":
    with ui.guard("computing the test-set colour scale", stop=False) as g, \
            st.spinner("Computing each method's maps on 16 test images (once per model and layer) ..."):
        vmax = ui.saliency.test_vmax(option, layer)
    if g.failed:
        scale = "relative"

with ui.guard("computing the heat maps"):
    grid, seconds, reused = ui.saliency.method_grid(option, lab, int(target), layer, scale, vmax)

ui.saliency.show_grid(lab, grid, seconds, reused)

st.subheader(f"Checks of {focus}")
ui.saliency.show_checks(option, lab, grid, methods[focus], focus, layer)

if ui.saliency.masks_available(option):
    st.subheader("Against the experts' lesion masks (test split)")
    ui.saliency.show_localisation(option, methods[focus], focus, layer)
