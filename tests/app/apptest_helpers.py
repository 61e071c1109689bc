"""Helpers shared by the AppTests (imported by module name: tests/ has no packages)."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

__all__ = ["rendered_text", "assert_clean", "assert_notice", "plotly_specs", "plotly_array"]


def rendered_text(at: AppTest) -> str:
    """Every element's protobuf text (labels, values, figure specs) in the main area and the sidebar."""
    parts = []
    for root in (at.main, at.sidebar):
        for node in root:
            proto = getattr(node, "proto", None)
            if proto is not None:
                parts.append(str(proto))
    return "\n".join(parts)


def assert_clean(at: AppTest) -> None:
    """No uncaught exception element and no traceback text anywhere."""
    assert not at.exception, [e.value for e in at.exception]
    text = rendered_text(at)
    assert "Traceback" not in text
    assert 'File "' not in text


def assert_notice(at: AppTest) -> None:
    """The not-for-diagnosis notice and the intended use are shown in the page and the sidebar."""
    main = [w.value for w in at.main.warning]
    side = [w.value for w in at.sidebar.warning]
    assert any("Not for diagnostic use" in m and "Intended use" in m for m in main), main
    assert any("Not for diagnostic use" in s for s in side), side
    assert any(m.value == "**Intended use**" for m in at.sidebar.markdown)


def plotly_specs(at: AppTest) -> dict[str, dict]:
    """Plotly figures in the page by element key (``st.plotly_chart(..., key=...)``)."""
    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        fig = json.loads(el.proto.spec)
        out[el.key or f"#{i}"] = fig
    return out


def plotly_array(value: object) -> np.ndarray:
    """A data array of a plotly JSON spec (plain list, or plotly 6's ``{"dtype", "bdata", "shape"}``)."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return arr
    return np.asarray(value)
