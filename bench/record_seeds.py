"""Record in a shipped spec how its recipe did over seeds, for the model card (``metrics["recipe_seeds"]``).

A shipped network is one seed of its recipe, often the one chosen on validation. The reviewer's model card
(:func:`medimg.ui.model_card.seed_spread`) shows its test result beside the recipe's mean ± SD over every seed that
was run, so a lucky seed is visible as one. The per-seed test metrics come from ``bench/results/transfer.json``
(``{task: {init: {base: {seed: metrics}}}}``, the rows ``bench/accuracy.py`` prints as "CPU runs"). The record is
written only when it provably describes this network's recipe: the spec's own seed must be among the runs, with
the same test accuracy and AUROC as the spec's own test report.

Usage::

    uv run python bench/record_seeds.py weights/busi_mobilenet_v2_288.json busi pretrained busi_mobilenet_v2_288

Rerun after ``medimg finalise`` (which rewrites ``metrics["test"]``, not this record).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medimg.spec import load_spec, save_spec

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("accuracy", "auroc", "macro_f1", "ece", "n")


def main() -> None:
    """Write ``metrics["recipe_seeds"]`` into the spec after checking it is this network's recipe."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", type=Path)
    p.add_argument("task")
    p.add_argument("init", choices=("pretrained", "scratch"))
    p.add_argument("base", help="the recipe's key in transfer.json, e.g. busi_mobilenet_v2_288")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "transfer.json")
    a = p.parse_args()
    spec = load_spec(a.spec)
    runs = json.loads(a.results.read_text())[a.task][a.init][a.base]
    own = str(spec.training.get("seed"))
    test = spec.metrics.get("test") or {}
    if not {"accuracy", "auroc"} <= set(test):
        raise SystemExit(f"{spec.name} has no test report yet: run medimg finalise on it first")
    if own not in runs:
        raise SystemExit(f"seed {own} of {spec.name} is not among the recorded runs {sorted(runs)}")
    for key in ("accuracy", "auroc"):
        if abs(float(runs[own][key]) - float(test[key])) > 1e-6:
            raise SystemExit(f"{spec.name}: recorded seed {own} has test {key} {runs[own][key]:.4f}, the spec "
                             f"{test[key]:.4f}: not this network's run")
    record = {"split": "test", "source": f"bench/results/transfer.json: {a.task} / {a.init} / {a.base}",
              "seeds": {s: {k: runs[s][k] for k in KEYS if k in runs[s]} for s in sorted(runs, key=int)}}
    save_spec(spec.replace(metrics={**spec.metrics, "recipe_seeds": record}), a.spec)
    print(json.dumps({"spec": spec.name, "seeds": list(record["seeds"])}))


if __name__ == "__main__":
    main()
