"""The shared sidebar (model picker, device badge, intended use, not-for-diagnosis notice) and page banner."""

from __future__ import annotations

import streamlit as st

from medimg.ui.resources import ModelOption, available_models, default_model, device_hint, weights_dir

__all__ = ["MODEL_KEY", "PICKER_KEY", "NOT_FOR_DIAGNOSIS", "sidebar", "selected_model", "choose_model", "notice",
           "intended_use_text", "app_chrome", "page_chrome"]

#: ``st.session_state`` key of the selected model (a spec file name, never patient data).
MODEL_KEY = "medimg.model"
#: Widget key of the model picker in the sidebar.
PICKER_KEY = "medimg.model_picker"
#: ``st.session_state`` flag: app.py rendered the sidebar and notice in the current run.
CHROME_KEY = "medimg.chrome"

#: The notice shown on every page.
NOT_FOR_DIAGNOSIS = ("**Not for diagnostic use.** For research, education and model review only. The output has "
                     "not been validated for clinical decisions; a qualified clinician must read every image.")


def intended_use_text(option: ModelOption | None) -> str:
    """The selected model's intended-use statement (from its spec), or a note that none is stated."""
    if option is None or option.spec is None:
        return "No model is selected."
    use = option.spec.intended_use.strip()
    return use if use else "The model's specification does not state an intended use."


def selected_model() -> ModelOption | None:
    """The model chosen in the sidebar (:func:`medimg.ui.resources.default_model` until the user chooses).

    Loads nothing: the model itself is loaded when the page first needs it (:func:`medimg.ui.get_predictor`).

    Returns
    -------
    ModelOption or None
        None when the weights folder holds no model, or the chosen one's spec is unreadable.
    """
    options = available_models()
    if not options:
        return None
    chosen = st.session_state.get(MODEL_KEY)
    for o in options:
        if o.path.name == chosen:
            return o if not o.error else None
    o = default_model(options)
    return o if o is not None and not o.error else None


def choose_model(name: str) -> None:
    """Select the model ``name`` (a spec file name) as if picked in the sidebar; a widget callback.

    Sets the session's choice and the picker's own widget state (allowed in a callback, which runs before the
    picker is drawn), so the browser's picker shows this model too; dropping the widget state instead would leave
    the browser showing the previous model while the page used this one.

    Parameters
    ----------
    name : str
        ``<name>.json`` of one of :func:`medimg.ui.resources.available_models`.
    """
    st.session_state[MODEL_KEY] = name
    st.session_state[PICKER_KEY] = name  # a callback runs before the picker is drawn: the browser shows it too


def notice(option: ModelOption | None) -> None:
    """The not-for-diagnosis notice with the model's intended use, at the top of a page's main area."""
    title = option.title if option is not None else "no model"
    st.warning(f"{NOT_FOR_DIAGNOSIS}  \n**Intended use** ({title}): {intended_use_text(option)}",
               icon=":material/health_and_safety:")


def sidebar() -> ModelOption | None:
    """Render the shared sidebar and return the selected model.

    Shows the model picker (spec titles of the models in :func:`medimg.ui.weights_dir`; the chest radiograph
    model until the user chooses), a badge saying where the network runs (CUDA or CPU, from
    :func:`medimg.ui.resources.device_hint`: no model is loaded here, so the first page draws at once), the
    model's intended use and the not-for-diagnosis notice.

    Returns
    -------
    ModelOption or None
        None when there is no usable model (the sidebar says why).
    """
    with st.sidebar:
        st.markdown("### :material/radiology: medimg")
        options = available_models()
        option: ModelOption | None = None
        shown: ModelOption | None = None
        if not options:
            st.warning(f"No model weights found in the weights folder ({weights_dir().name}). "
                       "Train one with `medimg train` or set MEDIMG_WEIGHTS.", icon=":material/folder_off:")
        else:
            names = [o.path.name for o in options]
            by_name = {o.path.name: o for o in options}
            current = st.session_state.get(MODEL_KEY)
            if current not in by_name:
                first = default_model(options)
                current = first.path.name if first is not None else names[0]
            if st.session_state.get(PICKER_KEY) not in by_name:
                st.session_state.pop(PICKER_KEY, None)
            # the picker's value comes from its widget state when set (by the user or choose_model), else from
            # the session's choice; passing an index as well would make Streamlit warn about two sources
            index = None if PICKER_KEY in st.session_state else names.index(current)
            name = st.selectbox("Model", names, **({} if index is None else {"index": index}),
                                format_func=lambda n: by_name[n].title, key=PICKER_KEY,
                                help="Models found in the weights folder, by the title in their specification.")
            # Kept outside the widget's own state, so the choice survives switching pages.
            st.session_state[MODEL_KEY] = name
            option = shown = by_name[name]
            if option.error:
                st.error(option.error)
                option = None
            else:
                # no model is loaded here: the page draws at once and loads it behind a spinner when needed
                label, color = device_hint()
                st.badge(f"Runs on {label}", color=color, icon=":material/memory:")
        st.markdown("**Intended use**")
        st.caption(intended_use_text(shown))
        st.warning("**Not for diagnostic use.** Research, education and model review only.",
                   icon=":material/health_and_safety:")
    return option


def app_chrome() -> ModelOption | None:
    """The shared sidebar and the page notice; called by app.py before ``page.run()``.

    Returns
    -------
    ModelOption or None
        The selected model (see :func:`sidebar`).
    """
    option = sidebar()
    notice(option)
    st.session_state[CHROME_KEY] = True
    return option


def _leave_legacy_pages_mode() -> bool:
    """Switch this server process from Streamlit's legacy ``pages/`` folder mode to app.py's navigation.

    Streamlit decides once per process whether an app "uses the pages directory" (a ``pages/`` folder beside the
    main script) and, until some run calls ``st.navigation``, runs a requested page file directly instead of
    app.py (``streamlit.runtime.scriptrunner.script_runner._mpa_v1``). When a process's first request is a deep
    link (``/dashboard``), app.py never runs, so the sidebar lists the raw file names ("app, analyze, dashboard,
    ...") instead of the grouped Clinician / Reviewer / Educator navigation, for every user until someone opens
    the root URL. ``st.navigation`` clears the same flag; clearing it here and rerunning sends this request
    through app.py, which finds the same page by its URL path.

    Returns
    -------
    bool
        True when the flag was set (the caller must rerun); False when app.py's navigation is already in charge,
        when the page is its own main script (``streamlit run pages/x.py``), or when Streamlit no longer has the
        flag.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without the legacy mode
        return False
    if not getattr(PagesManager, "uses_pages_directory", False):
        return False
    PagesManager.uses_pages_directory = False
    return True


def page_chrome() -> None:
    """First call of every page: renders the sidebar and notice unless app.py already did in this run.

    A page can run without app.py: ``streamlit run pages/x.py``, and Streamlit's legacy ``pages/`` folder
    handling, which on a process's first request (and on AppTest reruns) runs a page file directly. The
    not-for-diagnosis notice must be on every page in every case. In the legacy case this request is rerun
    through app.py instead (:func:`_leave_legacy_pages_mode`), so a deep link shows the grouped navigation.
    """
    if st.session_state.pop(CHROME_KEY, False):
        return
    if _leave_legacy_pages_mode():
        st.rerun()
    st.set_page_config(page_title="medimg", page_icon=":material/radiology:", layout="wide")
    app_chrome()
    st.session_state.pop(CHROME_KEY, None)
