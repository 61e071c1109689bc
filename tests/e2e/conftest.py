"""The real-browser tests share one ``streamlit run app.py`` server (a session fixture): each test opens its own
browser page, i.e. its own Streamlit session, so nothing of one test's upload is seen by another, and the server
starts and loads its models once for all of them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import REPO, WEIGHTS, _free_port, _wait_healthy


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``streamlit run app.py`` on a free localhost port with the shipped weights; yields (url, log path)."""
    if not any(WEIGHTS.glob("*.safetensors")):
        pytest.skip("shipped weights not present in weights/ (train them with `medimg train`)")
    port = _free_port()
    log = tmp_path_factory.mktemp("e2e_server") / "streamlit.log"
    env = dict(os.environ, MEDIMG_WEIGHTS=str(WEIGHTS), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
