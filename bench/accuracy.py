"""Print the shipped models' test metrics beside the published anchors and the project's goals.

Usage::

    uv run python bench/accuracy.py              # metrics stored in each spec (from its EvalReport)
    uv run python bench/accuracy.py --recompute  # re-run every model over its test split first

Numbers are printed, never asserted; the integration tests check that the stored numbers reproduce.
"""

from __future__ import annotations

import argparse
import json
import math

from medimg import list_weights, load_spec

#: task -> (goal accuracy, goal AUROC, published anchor)
ANCHORS = {
    "kermany-cxr": (0.95, 0.99, "Kermany et al. 2018: 0.928 / 0.968; MedMNIST+ best @224: 0.916 / 0.989; "
                    "issue-2 floor 0.88 / 0.95 (MedMNIST v2 ResNet-50 @224: 0.884 / 0.962)"),
    "pneumoniamnist": (0.95, 0.99, "MedMNIST v2 best (AutoML Vision): 0.946 / 0.991"),
    "breastmnist": (0.91, 0.95, "MedMNIST+ best: 0.906 / 0.940"),
    "busi": (0.90, 0.96, "(own split)"),
    "brain-mri": (0.90, 0.98, "(official Testing split)"),
    "pbc-blood": (0.985, 0.999, "BloodMNIST best: 0.966 (28), 0.990 (224)"),
}


def _fmt(x: float | None) -> str:
    return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights folder (default: the shipped one)")
    ap.add_argument("--recompute", action="store_true", help="evaluate each model on its test split now")
    args = ap.parse_args()
    rows = []
    for path in list_weights(args.weights):
        spec = load_spec(path)
        task = spec.training.get("config", {}).get("task", "?")
        if args.recompute:
            from medimg.predict import evaluate_split

            m = evaluate_split(path).metrics
        else:
            m = spec.metrics.get("test", {})
        goal_acc, goal_auc, anchor = ANCHORS.get(task, (float("nan"), float("nan"), ""))
        acc, auc = m.get("accuracy"), m.get("auroc")
        met = acc is not None and auc is not None and acc >= goal_acc and auc >= goal_auc
        rows.append((spec.name, task, acc, auc, m.get("sensitivity"), m.get("specificity"), m.get("macro_f1"),
                     m.get("ece_uncalibrated"), m.get("ece"), goal_acc, goal_auc, "yes" if met else "NO", anchor,
                     m.get("ci95", {})))
    head = ("model", "task", "acc", "AUROC", "sens", "spec", "mF1", "ECE raw", "ECE cal", "goal acc", "goal AUC", "met")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join([r[0], r[1], *(_fmt(v) for v in r[2:11]), r[11]]))
        ci = r[13]
        if ci:
            print("    95% CI: " + ", ".join(f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in ci.items()))
        print(f"    published: {r[12]}")
    if not rows:
        print("no weights found")
    print(json.dumps({"models": len(rows)}))


if __name__ == "__main__":
    main()
