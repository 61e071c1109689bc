"""Test-set dashboard (reviewers): how the selected model did on its held-out test set, with intervals for every
metric, an operating-point explorer, the screening view of a cytology model (NILM vs abnormal), calibration before
and after temperature scaling, and the cases behind every confusion-matrix cell."""

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
k = len(report.labels)
binary = k == 2
counts = ", ".join(f"{label}: {int((report.y_true == i).sum())}" for i, label in enumerate(report.labels))
st.caption(f"{option.title} on the **{report.split}** split: {n} images ({counts}). "
           "Probabilities are calibrated; 95 % CIs are percentile bootstrap intervals (1,000 resamples of the images).")

cis = ui.dashboard.metric_cis(option, report)
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Metrics")
    st.dataframe(ui.dashboard.metrics_table(report, cis), hide_index=True, width="stretch", key="metrics-table")

pos = report.positive_label if report.positive_label is not None else 1
threshold = None
with right:
    if binary:
        st.subheader("Operating point")
        start, start_name = ui.dashboard.default_threshold(option, report)
        threshold = st.slider(f"Threshold on p({report.labels[pos]})", 0.01, 0.99, float(round(start, 2)), 0.01,
                              key=f"op-threshold-{option.path.stem}",
                              help=f"An image is called {report.labels[pos]} when its calibrated probability is at "
                                   f"or above the threshold. Marked on the curves: {start_name} ({start:.2f}).")
        op, op_ci = ui.dashboard.operating_point(report, threshold, option)
        st.dataframe(ui.dashboard.operating_rows(op, op_ci), hide_index=True, width="stretch", key="op-table")
        prevalence = st.number_input(f"Prevalence of {report.labels[pos]} in your population", 0.001, 0.999,
                                     float(round(float((report.y_true == pos).mean()), 3)), 0.01, format="%.3f",
                                     key=f"op-prevalence-{option.path.stem}",
                                     help="PPV and NPV depend on prevalence; this test set's is the default.")
        ppv, npv = ui.dashboard.at_prevalence(op, prevalence)
        st.markdown(f"At a prevalence of **{prevalence:.1%}**: PPV **{ui.dashboard.fmt(ppv)}**, NPV "
                    f"**{ui.dashboard.fmt(npv)}** (Bayes' theorem from this threshold's sensitivity "
                    f"{ui.dashboard.fmt(op['sensitivity'])} and specificity {ui.dashboard.fmt(op['specificity'])}).")
    else:
        st.subheader("Per class (one vs the rest)")
        st.dataframe(ui.dashboard.one_vs_rest_rows(option), hide_index=True, width="stretch", key="ovr-table")
        st.caption("Decisions by argmax; each class against all others; 95 % bootstrap CIs in brackets.")

y_pred = ui.dashboard.predictions_at(report, threshold)
cm_col, cases_col = st.columns([1, 1], gap="large")
with cm_col:
    st.subheader("Confusion matrix")
    normalise = st.toggle("Row-normalised", value=False, key="cm-normalise",
                          help="Divide each row by its total: the diagonal becomes each class's recall.")
    cm = ui.dashboard.confusion_matrix_at(report, y_pred)
    cell = ui.dashboard.selected_cell(option)
    event = st.plotly_chart(ui.viz.confusion_matrix_figure(cm, report.labels, normalise=normalise, selected=cell),
                            key="cm", on_select="rerun", selection_mode="points")
    clicked = ui.viz.cell_from_selection(event)
    if clicked is not None and clicked != cell:
        ui.dashboard.select_cell(option, clicked)
        cell = clicked
    if threshold is not None:
        st.caption(f"At threshold {threshold:.2f}.")
with cases_col:
    ui.dashboard.show_cases(option, report, y_pred, cell)

st.subheader("Discrimination")
if binary:
    st.plotly_chart(ui.viz.operating_point_figure(report.y_true, report.probs, report.labels, pos, threshold,
                                                  reference=start, reference_name=start_name.split(" (")[0]),
                    key="op-curves")
else:
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.plotly_chart(ui.viz.per_class_roc_figure(report.y_true, report.probs, report.labels), key="roc")
    with c2:
        st.plotly_chart(ui.viz.pr_figure(report.y_true, report.probs, report.labels), key="pr")

screening = ui.dashboard.screening_view(option, report)
if screening is not None:
    neg, t_val = screening["negative"], screening["threshold"]
    st.subheader(f"Screening: {neg} vs abnormal")
    val = screening["val"]
    val_text = (f" ({val['n_abnormal'] + val['n_negative']} images; sensitivity {ui.dashboard.fmt(val['sensitivity'])},"
                f" specificity {ui.dashboard.fmt(val['specificity'])} there)"
                if {"n_abnormal", "n_negative", "sensitivity", "specificity"} <= set(val) else "")
    st.caption(f"The first question of screening: is the image abnormal at all (any class but {neg})? Abnormal score "
               f"= 1 − p({neg}) from the calibrated probabilities. The threshold **{t_val:.3f}** was fixed on the "
               f"validation split for at least {screening['target_specificity'] * 100:.0f} % specificity{val_text} and is "
               "applied unchanged to these test images: its sensitivity and specificity are the honest estimate. "
               "The sensitivity read off the test ROC uses a threshold chosen on the test images themselves and is "
               "optimistic.")
    roc_col, table_col = st.columns([5, 6], gap="large")
    with roc_col:
        st.plotly_chart(ui.viz.screening_roc_figure(screening["y_abnormal"], screening["score"], t_val,
                                                    screening["target_specificity"], neg), key="screening-roc")
    with table_col:
        st.table(ui.dashboard.screening_rows(screening), hide_index=True)
        st.markdown(f"**At the validation-fixed threshold {t_val:.3f}** (rows: true class; columns: the call)")
        st.table(ui.dashboard.screening_confusion_rows(screening), hide_index=True)
        st.markdown(ui.dashboard.screening_class_line(screening))
        st.caption("95 % CIs: percentile bootstrap (1,000 resamples of the images). PPV and NPV at this test set's "
                   "prevalence of abnormal images.")

grades = ui.dashboard.grade_view(option, report)
if grades is not None:
    st.subheader("Bethesda grades: NILM, low-grade, high-grade")
    st.caption("The second question, in the terms that decide follow-up: low-grade squamous abnormalities (ASC-US, "
               "LSIL) against high-grade ones (ASC-H, atypical squamous cells that cannot exclude HSIL; HSIL; SCC), "
               "which are referred for colposcopy. A grade's probability is the sum of its classes' calibrated "
               "probabilities and the most probable grade is called, so a cell torn between ASC-H and HSIL is still "
               "called high-grade.")
    st.markdown(ui.dashboard.grade_line(grades))
    grade_col, routing_col = st.columns(2, gap="large")
    with grade_col:
        st.markdown("**Grades** (rows: true grade; columns: the call)")
        st.table(ui.dashboard.grade_confusion_rows(grades), hide_index=True)
    with routing_col:
        st.markdown("**Where each class goes**")
        st.table(ui.dashboard.grade_routing_rows(grades), hide_index=True)

st.subheader("Calibration")
before, ece_before, ece_after, temperature = ui.dashboard.calibration(option, report)
st.plotly_chart(ui.viz.calibration_figure(report.y_true, before, report.probs, ece_before, ece_after, temperature),
                key="calibration")
if "ece" in cis:
    st.caption(f"ECE after temperature scaling {ece_after:.3f} (95 % CI {cis['ece'][0]:.3f} – {cis['ece'][1]:.3f}); "
               "the probabilities before scaling are recovered exactly from the calibrated ones and the spec's "
               "temperature.")

st.subheader("Training")
history = ui.dashboard.load_history(option)
if history:
    st.plotly_chart(ui.viz.training_curves_figure(history, ui.dashboard.best_epoch(option)), key="training")
else:
    st.info("No training log (`<name>.log.json`) beside this model.", icon=":material/history:")

if option.spec is not None:
    with st.expander("Model card: how this model was made", icon=":material/badge:"):
        st.table(ui.model_card.model_card_rows(option.spec), hide_index=True)
        st.caption("From the spec that ships beside the weights (`weights/<name>.json`): the weights load only when "
                   "their sha256 matches it.")

st.subheader("Report for reviewers")
ui.report_review.download_button(option, report, threshold)
