"""`medimg train` under torchrun with 2 CPU processes (gloo) matches a single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = ["train", "--arch", "smallcnn", "--limit", "64", "--epochs", "2", "--size", "32", "--batch-size", "32",
        "--name", "ddp", "--device", "cpu", "--threads", "1"]


def _run(cmd: list[str], out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([*cmd, *ARGS, "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "ddp.log.json").read_text())


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
