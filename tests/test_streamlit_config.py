"""The Streamlit configuration meets the privacy bar (RELIABILITY.md) and Streamlit really reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".streamlit" / "config.toml"

EXPECTED = {
    "client.showErrorDetails": "none",
    "client.toolbarMode": "minimal",
    "browser.gatherUsageStats": False,
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "server.enableStaticServing": False,
    "server.maxUploadSize": 200,
    "runner.fastReruns": True,
    "runner.magicEnabled": False,
    "runner.postScriptGC": False,
    "logger.level": "warning",
}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_config_file_values() -> None:
    flat = _flatten(tomllib.loads(CONFIG.read_text(encoding="utf-8")))
    for key, value in EXPECTED.items():
        assert flat.get(key) == value, key
    assert flat["theme.base"] == "light"


def test_show_error_details_is_a_valid_choice() -> None:
    from streamlit.config import ShowErrorDetailsConfigOptions

    assert ShowErrorDetailsConfigOptions("none") is ShowErrorDetailsConfigOptions.NONE


def test_max_upload_matches_loader_limit() -> None:
    from medimg.io import MAX_FILE_BYTES

    assert EXPECTED["server.maxUploadSize"] == MAX_FILE_BYTES // 2**20


@pytest.mark.timeout(120)
def test_streamlit_loads_the_file(tmp_path: Path) -> None:
    """A fresh interpreter in the repository (empty HOME: no global config) sees our values, from our file."""
    code = (
        "import json, streamlit.config as c\n"
        "c.get_config_options(force_reparse=True)\n"
        f"keys = {list(EXPECTED)!r}\n"
        "print(json.dumps({k: [c.get_option(k), c.get_where_defined(k)] for k in keys}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for key, value in EXPECTED.items():
        option, where = got[key]
        assert option == value, key
        assert Path(where).resolve() == CONFIG.resolve(), (key, where)
