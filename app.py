"""medimg: the Streamlit entry point. Page config, navigation and the shared sidebar; no analysis logic.

Run with ``uv run streamlit run app.py``.
"""

# pandas is loaded by the first Streamlit element that needs it (a table), and plotly looks it up in sys.modules
# without importing it: a rerun that starts while an interrupted run is still inside that first import would see
# a half-initialised module. Importing it here, in every run's first line, makes any run wait until it is whole.
import pandas  # noqa: F401
import streamlit as st

from medimg import ui

st.set_page_config(page_title="medimg", page_icon=":material/radiology:", layout="wide",
                   initial_sidebar_state="expanded")

# One file per user task, grouped by user; add pages here (e.g. saliency faithfulness).
PAGES = {
    "Clinician": [
        st.Page("pages/analyze.py", title="Analyze", icon=":material/image_search:", default=True),
    ],
    "Reviewer": [
        st.Page("pages/dashboard.py", title="Test-set dashboard", icon=":material/monitoring:"),
        st.Page("pages/saliency.py", title="Saliency lab", icon=":material/lightbulb:"),
    ],
    "Educator": [
        st.Page("pages/inside.py", title="Inside the CNN", icon=":material/neurology:"),
        st.Page("pages/train_lab.py", title="Training lab", icon=":material/model_training:"),
    ],
}

page = st.navigation(PAGES)
ui.app_chrome()
page.run()
