"""Train many models at once on one GPU host from data packs (``medimg pack``), for the transfer-learning study:
ImageNet-pretrained and scratch MobileNetV2, three seeds each, every task.

Each run is the library's own ``medimg train --data-pack`` (the same loop as on a CPU); several run side by
side so the GPU and the host's cores stay busy. Runs are ordered seed 0 first (both initialisations, the
longest tasks first), so a deadline cuts seeds, never a task. At the end the driver writes ``summary.json``
(every run: best validation AUROC, epochs, wall time, test metrics on the pack's test images), a tarball of
every spec/report/log, and the seed-0 weights of both initialisations, in tarballs of at most 15 MB.

Finish the brought-back models on the real images with ``medimg finalise`` (temperature on the real
validation split, test report on the real test split).

Usage (on the GPU host, from the repository root, the ImageNet file in ``$TORCH_HOME/hub/checkpoints``)::

    PYTHONPATH=. python3 bench/gpu_train.py --packs .gpu/packs --tasks kermany-cxr busi --out "$OUT"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

#: task -> (size, epochs, batch, ema, patience, lr); MobileNetV2, freeze 1 epoch + backbone lr x 0.3 when
#: pretrained. Epoch counts suit a GPU host (the CPU table in bench/train_all.sh is shorter).
PLAN: dict[str, tuple[int, int, int, float, int, float]] = {
    "kermany-cxr": (224, 15, 32, 0.995, 5, 1e-3),
    "pneumoniamnist": (224, 15, 32, 0.995, 5, 1e-3),
    "brain-mri": (224, 25, 32, 0.99, 8, 1e-3),
    "pbc-blood": (224, 20, 32, 0.99, 6, 1e-3),
    "cric-cervix": (128, 20, 32, 0.99, 6, 1e-3),
    "busi": (224, 40, 32, 0.95, 12, 1e-3),
    "breastmnist": (224, 40, 32, 0.95, 12, 1e-3),
    "head-ct": (224, 30, 16, 0.9, 10, 1e-3),
}
ARCH = "mobilenet_v2"


def run_name(task: str, init: str, seed: int) -> str:
    """``<task>_mobilenet_v2_<size>[_scratch][_seed<k>]`` (task with ``-`` as ``_``)."""
    size = PLAN[task][0]
    name = f"{task.replace('-', '_')}_{ARCH}_{size}"
    if init == "scratch":
        name += "_scratch"
    return name + (f"_seed{seed}" if seed else "")


def command(task: str, init: str, seed: int, pack: Path | None, out: Path, threads: int,
            smoke: bool = False, bf16: bool = False) -> list[str]:
    """The ``medimg train`` command line of one run (``smoke``: 1 epoch on 32 images per split; ``pack`` None:
    from the data folder itself, gate fitted: how the shipped model is reproduced on a machine with the data)."""
    size, epochs, batch, ema, patience, lr = PLAN[task]
    if smoke:
        epochs, batch = 1, 16
    cmd = [sys.executable, "-m", "medimg.cli", "train", "--task", task, "--arch", ARCH, "--size", str(size),
           "--epochs", str(epochs), "--batch-size", str(batch), "--lr", str(lr), "--ema-decay", str(ema),
           "--patience", str(patience), "--seed", str(seed), "--out", str(out), "--name",
           run_name(task, init, seed), "--threads", str(threads), "--channels-last"]  # (always on CUDA)
    if pack is not None:
        cmd += ["--no-gate", "--data-pack", str(pack)]
    if smoke:
        cmd += ["--limit", "32"]
    if bf16:  # bf16 autocast on a CPU as on CUDA (where it is always on)
        cmd += ["--bf16"]
    if init == "imagenet":
        cmd += ["--pretrained", "imagenet", "--freeze-epochs", "1", "--backbone-lr-scale", "0.3"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """Run the plan; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packs", type=Path, default=Path(".gpu/packs"))
    p.add_argument("--tasks", nargs="+", default=list(PLAN))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--inits", nargs="+", default=["imagenet", "scratch"])
    p.add_argument("--jobs", type=int, default=8, help="runs side by side")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--launch-until", type=float, default=420.0, help="seconds after which no run starts")
    p.add_argument("--kill-at", type=float, default=510.0, help="seconds after which unfinished runs stop")
    p.add_argument("--no-pack", action="store_true",
                   help="train from the data folder (real images) and fit the gate, e.g. --work weights --jobs 1")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast on a CPU host too (the GPU recipe's precision; about 1.6 x faster there)")
    p.add_argument("--smoke", action="store_true", help="1 epoch on 32 images per split (checks the setup)")
    p.add_argument("--work", type=Path, default=Path("runs/gpu"))
    p.add_argument("--out", type=Path, required=True, help="summary and tarballs")
    a = p.parse_args(argv)
    t0 = time.time()
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "logs").mkdir(exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        import torch

        print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}",
              torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", flush=True)
    except ImportError:
        pass
    from medimg.training.pack import pack_info

    def n_train(t: str) -> int:
        return 1 if a.no_pack else pack_info(a.packs / f"{t}_{PLAN[t][0]}.npz", checksum=False)["n"]["train"]

    cost = {t: PLAN[t][1] * (PLAN[t][0] ** 2) * n_train(t) for t in a.tasks}  # longest runs start first
    queue = [(t, i, s) for s in a.seeds for i in a.inits for t in sorted(a.tasks, key=lambda t: -cost[t])]
    finished = [j for j in queue if (a.work / f"{run_name(*j)}.eval.json").exists()]
    for j in finished:  # a finished run (its test report exists) is not run again; an interrupted one resumes
        print(f"skip {run_name(*j)} (finished)", flush=True)
    queue = [j for j in queue if j not in finished]
    running: dict[str, tuple[subprocess.Popen, float, tuple[str, str, int]]] = {}
    done: dict[str, dict] = {}
    while queue or running:
        now = time.time() - t0
        for name, (proc, start, job) in list(running.items()):
            rc = proc.poll()
            if rc is None and now > a.kill_at:
                proc.terminate()
                rc = proc.wait(30)
                done[name] = {"job": job, "rc": "killed at deadline", "seconds": round(time.time() - t0 - start, 1)}
                print(f"{now:6.0f}s killed {name}", flush=True)
                del running[name]
            elif rc is not None:
                done[name] = {"job": job, "rc": rc, "seconds": round(now - start, 1)}
                print(f"{now:6.0f}s end {name} rc={rc} ({now - start:.0f}s)", flush=True)
                if rc:
                    print((a.work / "logs" / f"{name}.log").read_text()[-1500:], flush=True)
                del running[name]
        while queue and len(running) < a.jobs and now <= a.launch_until:
            task, init, seed = job = queue.pop(0)
            name = run_name(task, init, seed)
            pack = None if a.no_pack else a.packs / f"{task}_{PLAN[task][0]}.npz"
            log = open(a.work / "logs" / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
            proc = subprocess.Popen(command(task, init, seed, pack, a.work, a.threads, a.smoke, a.bf16), stdout=log,
                                    stderr=subprocess.STDOUT)
            running[name] = (proc, now, job)
            print(f"{now:6.0f}s start {name}", flush=True)
        if now > a.launch_until and queue:
            for job in queue:
                done[run_name(*job)] = {"job": job, "rc": "not started (deadline)"}
            queue = []
        time.sleep(2)
    summary = []
    for name, d in done.items():
        task, init, seed = d["job"]
        row = {"name": name, "task": task, "init": init, "seed": seed, "rc": d["rc"], "seconds": d.get("seconds")}
        spec = a.work / f"{name}.json"
        if spec.exists() and d["rc"] == 0:
            s = json.loads(spec.read_text())
            tr = s.get("training", {})
            row.update(best_val_auroc=tr.get("best_val_auroc"), best_epoch=tr.get("best_epoch"),
                       epochs_run=tr.get("epochs_run"), wall_seconds=tr.get("wall_seconds"),
                       test_on_pack=s.get("metrics", {}).get("test"))
        summary.append(row)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    with tarfile.open(a.out / "results.tgz", "w:gz") as tf:
        for f in sorted(a.work.glob("*.json")) + sorted((a.work / "logs").glob("*.log")):
            tf.add(f, arcname=f.relative_to(a.work))
    bundle, size, k = [], 0, 0
    for f in sorted(a.work.glob("*.safetensors")):
        if "_seed" in f.name or f.name.endswith(".ckpt.safetensors"):
            continue
        if bundle and size + f.stat().st_size > 15e6:
            _tar(a.out / f"weights{k}.tar", bundle, a.work)
            bundle, size, k = [], 0, k + 1
        bundle.append(f)
        size += f.stat().st_size
    if bundle:
        _tar(a.out / f"weights{k}.tar", bundle, a.work)
    print(f"{time.time() - t0:6.0f}s finished: {sum(1 for r in summary if r['rc'] == 0)} of {len(summary)} runs",
          flush=True)
    return 0


def _tar(path: Path, files: list[Path], root: Path) -> None:
    with tarfile.open(path, "w") as tf:
        for f in files:
            tf.add(f, arcname=f.relative_to(root))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
