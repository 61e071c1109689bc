"""Test-set dashboard: how the selected model did on its held-out test set."""

import streamlit as st

from medimg import ui

ui.page_chrome()
st.title("Test-set dashboard")

option = ui.selected_model()
if option is None:
    st.info("No model is available: there is nothing to report.", icon=":material/folder_off:")
    st.stop()

with ui.guard("reading the test-set report"):
    report = ui.dashboard.load_report(option)
if report is None:
    st.info(f"**{option.title}** has no test-set report yet. Create one with "
            f"`medimg evaluate --model {option.path.name} --out {option.eval_path.name}`.",
            icon=":material/analytics:")
    st.stop()

n = len(report.y_true)
counts = ", ".join(f"{label}: {int((report.y_true == i).sum())}" for i, label in enumerate(report.labels))
st.caption(f"{option.title} on the **{report.split}** split: {n} images ({counts}). "
           "Probabilities are calibrated; 95 % CIs are percentile bootstrap intervals.")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Metrics")
    st.dataframe(ui.dashboard.metrics_rows(report), hide_index=True, width="stretch")
with right:
    st.subheader("Confusion matrix")
    normalise = st.toggle("Row-normalised", value=False, key="cm-normalise",
                          help="Divide each row by its total: the diagonal becomes each class's recall.")
    cm = ui.dashboard.confusion_matrix(report)
    st.plotly_chart(ui.viz.confusion_matrix_figure(cm, report.labels, normalize=normalise), key="cm")

ci = (report.metrics.get("ci95") or {}).get("auroc")
c1, c2 = st.columns(2, gap="large")
with c1:
    st.plotly_chart(ui.viz.roc_figure(report.y_true, report.probs, report.labels, report.positive_label,
                                      ci=tuple(ci) if ci else None), key="roc")
with c2:
    st.plotly_chart(ui.viz.pr_figure(report.y_true, report.probs, report.labels, report.positive_label), key="pr")

c3, c4 = st.columns(2, gap="large")
with c3:
    st.plotly_chart(ui.viz.reliability_figure(report.y_true, report.probs, ece=report.metrics.get("ece")),
                    key="reliability")
with c4:
    history = ui.dashboard.load_history(option)
    if history:
        st.plotly_chart(ui.viz.training_curves_figure(history), key="training")
    else:
        st.info("No training log (`<name>.log.json`) beside this model.", icon=":material/history:")
