"""The real-browser tests share one ``streamlit run app.py`` server (a session fixture): each test opens its own
browser page, i.e. its own Streamlit session, so nothing of one test's upload is seen by another, and the server
starts and loads its models once for all of them (once per pytest-xdist worker that runs one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import require_shipped_weights, serve_app


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``streamlit run app.py`` on a free localhost port with the shipped weights; yields (url, log path)."""
    require_shipped_weights()
    log = tmp_path_factory.mktemp("e2e_server") / "streamlit.log"
    with serve_app(log) as url:
        yield url, log
