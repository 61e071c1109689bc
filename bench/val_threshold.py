"""Would a decision threshold chosen on validation beat the argmax (probability 0.5) on a binary task's test split?

A binary model's spec may carry ``threshold`` (probability of the positive class at or above which it is called);
the shipped ones use the argmax. This script computes a shipped binary model's calibrated probabilities on the
real validation and test splits, the threshold that maximises validation accuracy (ties: the one nearest 0.5) and
the one at Youden's J, and prints validation and test accuracy, sensitivity and specificity at 0.5 and at both.
A change of the serving rule would be decided on validation only; the test columns show whether it carries over.

Usage::

    uv run python bench/val_threshold.py pneumoniamnist_mobilenet_v2_224 [more shipped binary models]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_curve
from soup import logits_of  # bench/ is the script's folder
from tta_mean import print_studies

from medimg.models import load_model
from medimg.predict import softmax
from medimg.preprocess import normalise_batch
from medimg.spec import spec_task
from medimg.training.tasks import load_task_split

ROOT = Path(__file__).resolve().parents[1]


def at(p: np.ndarray, y: np.ndarray, t: float) -> dict[str, float]:
    """Accuracy, sensitivity and specificity of ``p >= t`` (p: positive-class probability, y in {0, 1})."""
    call = p >= t
    return {"threshold": round(float(t), 4), "errors": int((call != y).sum()),
            "accuracy": round(float((call == y).mean()), 4), "sensitivity": round(float(call[y == 1].mean()), 4),
            "specificity": round(float((~call[y == 0]).mean()), 4)}


def best_accuracy_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """Threshold among the midpoints of sorted probabilities that maximises accuracy; ties: nearest 0.5."""
    u = np.unique(p)
    cands = np.concatenate([[0.5], (u[1:] + u[:-1]) / 2])
    acc = np.array([((p >= t) == y).mean() for t in cands])
    best = cands[acc >= acc.max() - 1e-12]
    return float(best[np.argmin(np.abs(best - 0.5))])


def youden_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """Threshold at the maximum of sensitivity + specificity - 1 (Youden 1950) on the ROC curve."""
    fpr, tpr, thr = roc_curve(y, p)
    return float(min(thr[np.argmax(tpr - fpr)], 1.0))


def study(name: str) -> dict[str, object]:
    """Validation and test operating points of one shipped binary model."""
    net, spec = load_model(ROOT / "weights" / f"{name}.json", device="cpu")
    if spec.positive_label is None:
        raise SystemExit(f"{name} is not a binary model.")
    pp, out = spec.preprocess, {"model": name}
    probs, ys = {}, {}
    for split in ("val", "test"):
        s = load_task_split(spec_task(spec), split, pp, None)
        lg = logits_of(net, normalise_batch(torch.as_tensor(s.x), pp))
        probs[split] = softmax(lg, spec.temperature)[:, spec.positive_label]
        ys[split] = (s.y.numpy() == spec.positive_label).astype(int)
    rules = {"argmax": 0.5, "best_val_accuracy": best_accuracy_threshold(probs["val"], ys["val"]),
             "youden_val": youden_threshold(probs["val"], ys["val"])}
    for rule, t in rules.items():
        out[rule] = {split: at(probs[split], ys[split], t) for split in ("val", "test")}
    return out


def main() -> None:
    """Print one JSON line per model."""
    print_studies(study, __doc__)


if __name__ == "__main__":
    main()
