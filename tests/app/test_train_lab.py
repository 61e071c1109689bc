"""The training lab: AppTests of the page (a short run on a tiny subset, its curves, its stop button, the busy
message) and tests of the worker pool (one job per session, capped threads, cancelled with the session,
nothing written to disk)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from apptest_helpers import assert_clean, assert_notice, plotly_array, plotly_specs
from streamlit.testing.v1 import AppTest

from medimg.errors import BusyError, SpecError
from medimg.ui import train_lab as tl

PAGE = "pages/train_lab.py"


@pytest.fixture(autouse=True)
def _medmnist(shared_data: Path) -> None:
    if not (shared_data / "medmnist" / "pneumoniamnist.npz").exists():
        pytest.skip("PneumoniaMNIST is not in the shared data")


def _wait(job: tl.LabJob, until: tuple[str, ...], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while job.state not in until:
        assert time.monotonic() < deadline, f"job still {job.state!r} after {timeout} s"
        job.touch()
        time.sleep(0.1)


def _form(at: AppTest, epochs: int, limit: int, batch: int = 16) -> AppTest:
    at.number_input(key="lab-epochs").set_value(epochs)
    at.number_input(key="lab-limit").set_value(limit)
    at.select_slider(key="lab-batch").set_value(batch)
    at.select_slider(key="lab-width").set_value(8)
    return at.button(key="FormSubmitter:lab-config-Train").click().run()


def _run_until_final(at: AppTest, timeout: float = 180.0) -> tl.LabJob:
    deadline = time.monotonic() + timeout
    job = at.session_state[tl.JOB_KEY]
    while not job.final:
        assert time.monotonic() < deadline, f"job still {job.state!r}"
        time.sleep(0.5)
        at.run()
    return at.run().session_state[tl.JOB_KEY]


def test_page_without_a_run(make_app) -> None:
    at = make_app(PAGE).run()
    assert_clean(at)
    assert_notice(at)
    assert any("press **Train**" in i.value for i in at.info)
    assert at.selectbox(key="lab-task").options == list(tl.LAB_TASKS.values())
    assert "lab-curves" not in plotly_specs(at)


def test_one_short_epoch_on_a_tiny_subset(make_app) -> None:
    at = make_app(PAGE).run()
    _form(at, epochs=1, limit=96)
    assert_clean(at)
    job = _run_until_final(at)
    assert job.state == "done", (job.state, job.error)
    assert_clean(at)
    figs = plotly_specs(at)
    # the curve: one point per series after one epoch
    curves = {t["name"]: plotly_array(t["y"]) for t in figs["lab-curves"]["data"]}
    assert set(curves) == {"training loss", "validation loss", "training accuracy", "validation accuracy"}
    assert all(len(v) == 1 for v in curves.values())
    assert curves["training loss"][0] > 0 and 0 <= curves["validation accuracy"][0] <= 1
    # test split: 96 images in the confusion matrix; accuracy / precision / recall shown
    cm = np.asarray(plotly_array(figs["lab-cm"]["data"][0]["z"]))
    assert cm.sum() == 96
    assert [m.label for m in at.metric][:3] == ["Accuracy", "Precision (PPV, pneumonia)",
                                               "Recall (sensitivity, pneumonia)"]
    res = job.result
    assert at.metric[0].value == f"{res.metrics['accuracy']:.1%}"
    assert abs(res.metrics["accuracy"] - np.trace(cm) / cm.sum()) < 1e-12
    # the learned filters are the model's first convolution
    np.testing.assert_allclose(res.filters, job.model.features.conv1.weight.detach().numpy().mean(axis=1))
    assert "lab-filters" in figs
    # beside HOG + SVM on the same split (the tiny weights folder has no shipped PneumoniaMNIST model)
    models = list(at.dataframe[-1].value["Model"])
    assert models[0] == "this small CNN" and models[1].startswith("HOG + SVM")
    assert res.baseline is not None and res.baseline["metrics"]["n"] == 96
    assert any("No shipped model of this task" in c.value for c in at.caption)


def test_stop_button_stops_the_run(make_app) -> None:
    at = make_app(PAGE).run()
    _form(at, epochs=30, limit=600, batch=16)
    job = at.session_state[tl.JOB_KEY]
    _wait(job, ("training",))
    while job.progress[1] < 2:  # a few batches in
        job.touch()
        time.sleep(0.05)
    at.run()
    at.button(key="lab-stop").click().run()
    job = _run_until_final(at)
    assert job.state == "stopped" and job.stop_reason == "stopped by the user"
    assert len(job.history) < 30
    assert_clean(at)
    assert any("Stopped (stopped by the user)" in p.proto.text for p in at.get("progress"))
    if job.history:  # stopped after an epoch: still tested and compared
        assert list(at.dataframe[-1].value["Model"])[:2] == ["this small CNN", job.result.baseline and
                                                             f"HOG + SVM (C = {job.result.baseline['C']:g})"]


def test_busy_message_beyond_capacity(make_app, monkeypatch: pytest.MonkeyPatch) -> None:
    full = tl.LabServer(workers=1, queued=0, threads=1)
    other = tl.LabJob(tl.LabConfig(), "another-session")
    other.state = "training"
    full._jobs["another-session"] = other
    monkeypatch.setattr(tl, "lab_server", lambda: full)
    at = make_app(PAGE).run()
    _form(at, epochs=1, limit=96)
    assert_clean(at)
    busy = f"{BusyError.title}: The training lab is busy"
    assert any(e.value.startswith(busy) for e in at.error), [e.value for e in at.error]
    assert tl.JOB_KEY not in at.session_state


# --------------------------------------------------------------------------------------------------------------
# The worker pool


def test_config_bounds() -> None:
    with pytest.raises(SpecError, match="depth 4"):
        tl.LabConfig(depth=4)
    with pytest.raises(SpecError, match="kernel 4"):
        tl.LabConfig(kernel=4)
    with pytest.raises(SpecError, match="task"):
        tl.LabConfig(task="kermany-cxr")
    assert "16 -> 32" in tl.LabConfig(depth=2).describe()


def test_one_job_per_session_threads_capped_and_cancelled_with_the_session(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = tl.LabServer(workers=1, queued=1, threads=1)
    main_threads = torch.get_num_threads()
    cfg = tl.LabConfig(epochs=30, limit=2000, batch_size=16, width=8)
    first = server.submit(cfg, "s1")
    _wait(first, ("training",))
    assert first.threads_used == 1 and torch.get_num_threads() == main_threads  # the cap is the worker's own
    second = server.submit(cfg, "s1")  # same session: the first run is stopped
    _wait(first, ("stopped",))
    assert first.stop_reason == "a new run was started"
    _wait(second, ("training",))
    # the session goes away (no Streamlit runtime here: its page stops polling)
    monkeypatch.setattr(tl, "IDLE_CANCEL_S", 0.2)
    second.last_seen = time.monotonic() - 10
    deadline = time.monotonic() + 60
    while not second.final:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert second.state == "stopped" and second.stop_reason == "the session ended"
    assert not server.live_jobs()
    assert list(tmp_path.iterdir()) == []  # nothing written: no checkpoint, log or temporary file


def test_queue_waits_for_a_worker_then_runs() -> None:
    server = tl.LabServer(workers=1, queued=1, threads=1)
    cfg = tl.LabConfig(epochs=1, limit=64, batch_size=16, width=4)
    a = server.submit(tl.LabConfig(epochs=30, limit=2000, batch_size=16, width=8), "a")
    _wait(a, ("training",))
    b = server.submit(cfg, "b")
    time.sleep(0.3)
    assert b.state == "queued"
    with pytest.raises(BusyError):
        server.submit(cfg, "c")
    a.stop()
    _wait(b, ("done", "failed"))
    assert b.state == "done" and len(b.history) == 1


def test_train_lab_model_streams_epochs_and_uses_the_chosen_network() -> None:
    rows: list[dict] = []
    cfg = tl.LabConfig(epochs=2, limit=64, batch_size=16, depth=2, width=4, kernel=5, flip=True, rotation=True,
                       crop=True)
    model, res = tl.train_lab_model(cfg, on_epoch=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2] and res.epochs == 2
    assert model.features.conv1.kernel_size == (5, 5) and model.features.conv2.out_channels == 8
    assert not hasattr(model.features, "conv3")
    assert res.filters.shape == (4, 5, 5)
    assert res.n == {"train": 64, "val": 64, "test": 64}
    with pytest.raises(tl._Stopped):
        tl.train_lab_model(cfg, should_stop=lambda: True)
    assert os.environ.get("MEDIMG_LAB_WORKERS") is None or tl.MAX_WORKERS >= 1


def test_augment_batch() -> None:
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    assert tl.augment_batch(x, tl.LabConfig(), torch.Generator()) is x  # nothing chosen: untouched
    flipped = tl.augment_batch(x, tl.LabConfig(flip=True), torch.Generator().manual_seed(1))
    same = [torch.allclose(flipped[i], x[i], atol=1e-5) for i in range(32)]
    mirrored = [torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5) for i in range(32)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True)) and 4 < sum(same) < 28  # per image, ~half
    cfg = tl.LabConfig(flip=True, rotation=True, crop=True)
    a = tl.augment_batch(x, cfg, torch.Generator().manual_seed(2))
    b = tl.augment_batch(x, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.allclose(a, x, atol=1e-3)
    torch.testing.assert_close(x, before)  # not modified


def test_a_run_stopped_after_an_epoch_is_still_tested_and_compared() -> None:
    server = tl.LabServer(workers=1, queued=0, threads=1)
    job = server.submit(tl.LabConfig(epochs=30, limit=128, batch_size=16, width=4), "stopper")
    deadline = time.monotonic() + 60
    while not job.history:
        assert time.monotonic() < deadline
        job.touch()
        time.sleep(0.02)
    job.stop()
    _wait(job, ("stopped",))
    assert 1 <= job.result.epochs < 30 and job.result.metrics["n"] == 128
    assert job.result.baseline is not None and job.result.baseline["metrics"]["n"] == 128
