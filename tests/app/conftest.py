"""Fixtures of the AppTests: a weights folder with the tiny model (with and without a test-set report)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medimg.evaluate import EvalReport

REPO = Path(__file__).resolve().parents[2]
#: Seconds an AppTest run may take (first runs import torch and load the model).
TIMEOUT = 180


def _clone_model(src_spec: Path, folder: Path, name: str, title: str) -> Path:
    """Copy a model under another name (the spec's ``name`` must match the weights file stem)."""
    spec = json.loads(src_spec.read_text(encoding="utf-8"))
    spec.update(name=name, title=title)
    shutil.copyfile(src_spec.with_suffix(".safetensors"), folder / f"{name}.safetensors")
    out = folder / f"{name}.json"
    out.write_text(json.dumps(spec), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def app_weights(tiny_spec_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder: ``tiny_smallcnn`` with an EvalReport and training log, ``tiny_noreport`` without."""
    d = tmp_path_factory.mktemp("app_weights")
    for suffix in (".json", ".safetensors"):
        shutil.copyfile(tiny_spec_path.with_suffix(suffix), d / f"tiny_smallcnn{suffix}")
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(0.25 + 0.5 * y + rng.normal(0, 0.2, 80), 0.01, 0.99)
    probs = np.stack([1 - p1, p1], axis=1)
    EvalReport.build("tiny_smallcnn", "test", ["normal", "pneumonia"], y, probs, [f"img{i}" for i in range(80)],
                     positive_label=1, n_boot=50).save(d / "tiny_smallcnn.eval.json")
    history = [{"epoch": e, "train_loss": 0.7 - 0.1 * e, "val_loss": 0.72 - 0.08 * e, "val_accuracy": 0.5 + 0.1 * e,
                "val_auroc": 0.55 + 0.1 * e} for e in (1, 2, 3)]
    (d / "tiny_smallcnn.log.json").write_text(json.dumps({"config": {}, "history": history}), encoding="utf-8")
    _clone_model(d / "tiny_smallcnn.json", d, "tiny_noreport", "Tiny model without report")
    return d


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch, app_weights: Path) -> Callable[..., AppTest]:
    """``make_app(script, folder=None)``: an AppTest of ``script`` (``"app.py"`` or ``"pages/<page>.py"``) listing
    models from ``folder`` (default :func:`app_weights`).

    Pages are tested as their own main script: every page renders the shared sidebar and notice itself when
    app.py has not (``medimg.ui.page_chrome``). (Driving pages through app.py in AppTest is unreliable: with a
    ``pages/`` folder beside the main script, AppTest re-enables Streamlit's legacy folder handling on every
    rerun, so reruns skip app.py and widget state is lost.)
    """

    def make(script: str = "app.py", folder: Path | None = None) -> AppTest:
        monkeypatch.setenv("MEDIMG_WEIGHTS", str(folder or app_weights))
        return AppTest.from_file(str(REPO / script), default_timeout=TIMEOUT)

    return make
