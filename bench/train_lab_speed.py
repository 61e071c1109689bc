"""Training lab speed: wall time of 5 epochs of the default small CNN on PneumoniaMNIST-28, and its accuracy beside
HOG + SVM and the shipped model of the task on the same test split.

Usage::

    uv run python bench/train_lab_speed.py                  # default config, threads 1 and 2
    uv run python bench/train_lab_speed.py --threads 2 --epochs 5 --augment

The goal (issue 10): five epochs in under 60 s on 2 CPU cores. The baseline measured in the same run is one epoch
of the same network with one thread; ratios are printed against it. The machine's load average is printed before
and after (other processes share the cores). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import torch

from medimg.ui.train_lab import LAB_THREADS, LabConfig, hog_svm_baseline, shipped_on_split, train_lab_model


def _run(cfg: LabConfig, threads: int) -> dict:
    """Train in a fresh thread with ``threads`` torch threads (as the app's worker does)."""
    out: dict = {}

    def work() -> None:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        _, res = train_lab_model(cfg)
        out.update(wall=time.perf_counter() - t0, result=res)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="pneumoniamnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--augment", action="store_true", help="flip + rotation + crop")
    ap.add_argument("--no-compare", action="store_true", help="skip HOG + SVM and the shipped model")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; cores: {os.cpu_count()}; "
          f"the app's lab worker uses {LAB_THREADS} thread(s)")
    aug = dict(flip=args.augment, rotation=args.augment, crop=args.augment)
    t0 = time.perf_counter()
    load = _run(LabConfig(task=args.task, epochs=1, **aug), 1)  # also fills the per-process data cache
    print(f"first run (loads the data: {load['result'].load_seconds:.1f} s) total {time.perf_counter() - t0:.1f} s")
    base = _run(LabConfig(task=args.task, epochs=1, **aug), 1)
    base_epoch = base["result"].epoch_seconds[0]
    print(f"baseline: 1 epoch, 1 thread: {base_epoch:.2f} s (train {base['result'].n['train']} images + val)")
    rows = {}
    for th in args.threads:
        cfg = LabConfig(task=args.task, epochs=args.epochs, **aug)
        r = _run(cfg, th)
        res = r["result"]
        train_s = sum(res.epoch_seconds)
        rows[th] = res
        print(f"{args.epochs} epochs, {th} thread(s): {train_s:.1f} s training + {r['wall'] - train_s:.1f} s test "
              f"= {r['wall']:.1f} s wall; {train_s / args.epochs:.2f} s/epoch = {train_s / args.epochs / base_epoch:.2f}"
              f" x the 1-thread baseline epoch; goal < 60 s: {'met' if r['wall'] < 60 else 'NOT met'}; "
              f"test accuracy {res.metrics['accuracy']:.3f}, AUROC {res.metrics.get('auroc', float('nan')):.3f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.no_compare:
        return
    cfg = LabConfig(task=args.task, epochs=args.epochs, **aug)
    t0 = time.perf_counter()
    svm = hog_svm_baseline(cfg)
    svm_s = time.perf_counter() - t0
    shipped = shipped_on_split(cfg)
    best = rows.get(LAB_THREADS, rows[min(rows)])  # the app's worker setting
    table = [(f"small CNN, {args.epochs} epochs", best.metrics),
             (f"HOG + SVM (C={svm['C']:g}, {svm_s:.0f} s)", svm["metrics"])]
    if shipped:
        table.append((f"shipped {shipped['name']}", shipped["metrics"]))
    print(f"\n{'model':38s} accuracy  precision  recall  AUROC   (test split, n={best.n['test']})")
    for name, m in table:
        print(f"{name:38s} {m['accuracy']:.3f}     {m.get('ppv', float('nan')):.3f}      "
              f"{m.get('sensitivity', float('nan')):.3f}   {m.get('auroc', float('nan')):.3f}")
    print(json.dumps({"epoch_s": {th: r.epoch_seconds for th, r in rows.items()},
                      "accuracy": {name: m["accuracy"] for name, m in table}}, default=float))


if __name__ == "__main__":
    main()
