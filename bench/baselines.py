"""Classical baselines (HOG + logistic regression / linear SVM) on every task, beside the CNNs.

Usage::

    uv run python bench/baselines.py                       # all six tasks, both models
    uv run python bench/baselines.py --tasks busi breastmnist --out /tmp/b.json

Each task is loaded once (64 px for the full-resolution sets, 28 px for MedMNIST), HOG features are
extracted, C is chosen on the validation split by AUROC, and test metrics are computed with
:func:`medimg.evaluate.compute_metrics`, as for the CNNs. Numbers are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from medimg.training.baselines import MODELS, fit_baseline, load_task_features
from medimg.training.tasks import TASKS

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "baselines.json"


def _fmt(x: Any) -> str:
    return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN -> None, dict keys -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def run_task(task: str, models: tuple[str, ...], seed: int = 0) -> dict[str, Any]:
    """Both baselines on one task; returns ``{model: result}`` without confusion matrices."""
    data = load_task_features(task)
    out: dict[str, Any] = {}
    for model in models:
        out[model] = fit_baseline(task, model, seed=seed, data=data)
        out[model]["metrics"].pop("confusion_matrix", None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for task in args.tasks:
        results[task] = run_task(task, tuple(args.models), args.seed)
        print(f"[{time.perf_counter() - t0:6.0f} s] {task} done", flush=True)
    head = ("task", "model", "px", "dim", "n train/val/test", "acc", "AUROC", "mF1", "sens", "spec", "ECE", "C",
            "fit s", "total s")
    print(" | ".join(head))
    for task, per in results.items():
        for model, r in per.items():
            m, n = r["metrics"], r["n"]
            print(" | ".join([task, model, str(r["size"]), str(r["feature_dim"]), f"{n['train']}/{n['val']}/{n['test']}",
                              *(_fmt(m.get(k)) for k in ("accuracy", "auroc", "macro_f1", "sensitivity",
                                                         "specificity", "ece")),
                              f"{r['C']:g}", f"{r['fit_seconds']:.1f}", f"{r['seconds']:.1f}"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"description": "HOG (Dalal & Triggs 2005) + StandardScaler + class-balanced linear classifier; C "
                          "chosen on val by AUROC; test metrics from medimg.evaluate.compute_metrics (argmax).",
           "seed": args.seed, "results": results}
    args.out.write_text(json.dumps(_clean(doc), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
