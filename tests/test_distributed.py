"""`medimg train` under torchrun with 2 CPU processes (gloo): a short smoke run and the full check that it matches
a single process, both behind the slow marker (each starts two torch processes: 18 s for the smoke run on 2 cores);
CI (`.ci/run`) runs the smoke run after the default suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = ["train", "--arch", "smallcnn", "--limit", "64", "--epochs", "2", "--size", "32", "--batch-size", "32",
        "--name", "ddp", "--device", "cpu", "--threads", "1"]


def _run(cmd: list[str], out: Path, args: list[str] = ARGS) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([*cmd, *args, "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "ddp.log.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_two_gloo_processes_smoke(shared_data: Path, tmp_path: Path) -> None:
    """Two processes start, share one epoch of global batches, and rank 0 alone writes the outputs."""
    args = [a if a not in ("64", "2") else {"64": "32", "2": "1"}[a] for a in ARGS]
    multi = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534",
                  "-m", "medimg.cli"], tmp_path / "two", [*args, "--no-gate"])
    assert len(multi["history"]) == 1 and multi["history"][0]["train_loss"] > 0
    spec = json.loads((tmp_path / "two" / "ddp.json").read_text())
    assert spec["training"]["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "ddp.eval.json", "ddp.json", "ddp.log.json", "ddp.safetensors"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_gloo_processes_match_one(shared_data: Path, tmp_path: Path) -> None:
    single = _run([sys.executable, "-m", "medimg.cli"], tmp_path / "one")
    multi = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                  "-m", "medimg.cli"], tmp_path / "two")
    assert len(single["history"]) == len(multi["history"]) == 2
    for a, b in zip(single["history"], multi["history"], strict=True):
        # same global batches and augmentation draws; only dropout masks and float reduction order differ
        assert abs(a["train_loss"] - b["train_loss"]) < 0.03, (a, b)
        assert abs(a["val_loss"] - b["val_loss"]) < 0.03, (a, b)
        assert abs(a["val_auroc"] - b["val_auroc"]) < 0.05, (a, b)
    spec = json.loads((tmp_path / "two" / "ddp.json").read_text())
    assert spec["training"]["processes"] == 2
    assert not (tmp_path / "two" / "ddp.ckpt.safetensors").exists()
