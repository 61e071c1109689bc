"""The Streamlit-aware part of medimg: cached resources, session state, widgets and safe error display.

Pages import only ``streamlit``, medimg's public names and this package. Nothing else in medimg imports
Streamlit.

Public names
------------
- :func:`app_chrome` (app.py) and :func:`page_chrome` (first line of every page): the shared sidebar, the
  not-for-diagnosis notice and intended use; :func:`selected_model`.
- :func:`weights_dir` (``$MEDIMG_WEIGHTS`` or :data:`medimg.WEIGHTS_DIR`), :func:`available_models`,
  :func:`get_predictor` (``st.cache_resource``, keyed by spec path).
- :class:`guard`: shows a :class:`medimg.MedimgError` as ``st.error(f"{err.title}: {err}")`` and anything else as a
  generic message; never a traceback.
- :mod:`session` (the current upload, kept across pages), :mod:`analysis` (decode, predict, explain, overlay; results in ``st.session_state`` only), :mod:`viewer` (the image panel), :mod:`widgets`,
  :mod:`dashboard`, :mod:`model_card` (how a model was made, from its spec), and :mod:`viz` (the plotly
  figures).
"""

from __future__ import annotations

import importlib
from typing import Any

from medimg.ui import session
from medimg.ui.errors import GENERIC_MESSAGE, error_text, guard
from medimg.ui.resources import (
    WEIGHTS_ENV,
    ModelOption,
    available_models,
    compute_slot,
    device_label,
    get_predictor,
    weights_dir,
)
from medimg.ui.sidebar import (
    MODEL_KEY,
    NOT_FOR_DIAGNOSIS,
    PICKER_KEY,
    app_chrome,
    notice,
    page_chrome,
    selected_model,
    sidebar,
)

__all__ = ["viz", "analysis", "dashboard", "report_review", "model_card", "saliency", "session", "viewer", "widgets", "guard", "error_text", "GENERIC_MESSAGE", "WEIGHTS_ENV",
           "ModelOption", "available_models", "compute_slot", "device_label", "get_predictor", "weights_dir",
           "MODEL_KEY", "PICKER_KEY", "NOT_FOR_DIAGNOSIS", "notice", "selected_model", "sidebar", "app_chrome", "page_chrome"]


#: Submodules imported when first used (``ui.analysis``, ``ui.viz`` ...): the first page draws before plotly,
#: scikit-learn, scipy and torch are imported (cold start; see bench/cold_start.py).
_LAZY = {"viz": "medimg.viz", "analysis": "medimg.ui.analysis", "dashboard": "medimg.ui.dashboard",
         "report_review": "medimg.ui.report_review", "model_card": "medimg.ui.model_card", "saliency": "medimg.ui.saliency",
         "viewer": "medimg.ui.viewer", "widgets": "medimg.ui.widgets"}


def __getattr__(name: str) -> Any:  # PEP 562: lazy submodules
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'medimg.ui' has no attribute {name!r}")
