"""Training lab (educators): build the classic small CNN, train it live on PneumoniaMNIST or BreastMNIST, and
compare it with HOG + SVM and the shipped model of the task on the same test split."""

import streamlit as st

from medimg import ui
from medimg.ui import train_lab

ui.page_chrome()
st.title("Training lab")
st.caption("The classic recipe: convolution -> ReLU -> pooling, two or three times, then fully connected layers, "
           "trained with cross-entropy and Adam. Choose the network, train it on 28 px medical images and watch the "
           "loss fall epoch by epoch; then see how it does on the held-out test split, what its first filters "
           "learned, and how it compares with a classical method and with the shipped model. Nothing is saved: the "
           "network lives in this browser session only.")

with ui.guard("reading the choices"):
    config = train_lab.config_form()
if config is not None:
    with ui.guard("starting the training run"):
        train_lab.start(config)

st.subheader("Training")
train_lab.live_panel()
job = train_lab.session_job()
if job is not None and job.result is not None:
    train_lab.results_section(job)
