"""Record in a shipped spec its recipe's cross-validated skill, for the model card (``metrics["recipe_cv"]``).

A shipped network's test split can be small (BreastMNIST: 156 images; head CT: 40 slices). k-fold
cross-validation of the same recipe (``medimg cv``) predicts every training and validation image once with a
network that never saw it; the reviewer's model card (:func:`medimg.ui.model_card.cv_estimate`) shows that
estimate beside the network's own test result. The record is written only when it provably describes this
network's recipe: the cross-validation summary (``<stem>.cv.json``, written by
:func:`medimg.training.cv.summarise_cv`) must carry the runs' common recipe, and it must equal the shipped run's
(:func:`medimg.training.cv.run_recipe`: every training option but fold, seed and bookkeeping, and the
preprocessing).

Usage::

    uv run python bench/record_cv.py weights/breastmnist_mobilenet_v2_224.json \\
        runs/cv_breast/breastmnist_mobilenet_v2_224.cv.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medimg.spec import load_spec, save_spec
from medimg.training.cv import run_recipe
from medimg.training.tasks import TASKS, split_fold_key

#: What the folds were dealt from, per kind of task.
OVER = {"stratified": "official training + validation images (the test split in no fold)",
        "grouped": "images, each {group} group whole in one fold"}


def main() -> None:
    """Write ``metrics["recipe_cv"]`` into the spec after checking the summary is of this network's recipe."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", type=Path)
    p.add_argument("summary", type=Path, help="<stem>.cv.json from medimg cv")
    a = p.parse_args()
    spec = load_spec(a.spec)
    summary = json.loads(a.summary.read_text())
    cfg = spec.training.get("config") or {}
    if summary.get("recipe") is None:
        raise SystemExit(f"{a.summary.name} records no common recipe (runs without their specs, or runs of "
                         "different recipes): rerun medimg cv with one command")
    own = run_recipe(a.spec)
    diff = sorted(k for k in set(own) | set(summary["recipe"]) if own.get(k) != summary["recipe"].get(k))
    if diff:
        raise SystemExit(f"{spec.name} was not trained with the cross-validated recipe: "
                         + ", ".join(f"{k} {own.get(k)!r} here, {summary['recipe'].get(k)!r} there" for k in diff))
    task = TASKS[split_fold_key(cfg["task"])[0]]
    kind = "grouped" if task.group_col else "stratified"
    record = {"folds": summary["folds"], "kind": kind, "over": OVER[kind].format(group=task.group_col),
              "per_fold": {k: summary["per_fold"][k] for k in ("accuracy", "auroc")},
              "pooled": {s: {k: m[k] for k in ("accuracy", "auroc", "n")} for s, m in summary["pooled"].items()},
              "source": f"medimg cv summary {a.summary.name}"}
    save_spec(spec.replace(metrics={**spec.metrics, "recipe_cv": record}), a.spec)
    print(json.dumps({"spec": spec.name, "recipe_cv": record}))


if __name__ == "__main__":
    main()
