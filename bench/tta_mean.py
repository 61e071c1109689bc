"""Would the mean of the test-time augmentation views be a better prediction than the plain image?

The shipped models report the identity view's calibrated probability and use the spec's TTA views
(``ModelSpec.tta``: per modality, e.g. the 8 dihedral views for microscopy) only to measure uncertainty. This
script measures, on the real validation and test splits, the plain prediction against the mean of the views'
probabilities (each with its own temperature fitted on validation), and prints errors, accuracy, AUROC and the
negative log-likelihood (NLL) of both. A change of the serving rule would be decided on validation only.

Usage::

    uv run python bench/tta_mean.py pbc_blood_mobilenet_v2_224 [more shipped model names]

Cost on 2 CPU threads: about 9 minutes for pbc-blood (1,051 images x 8 views at 224 px).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import log_loss, roc_auc_score

from medimg.models import load_model
from medimg.predict import softmax
from medimg.preprocess import normalise_batch
from medimg.spec import spec_task
from medimg.training.tasks import load_task_split
from medimg.uncertainty import tta_logits

ROOT = Path(__file__).resolve().parents[1]


def fit_t(view_logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the validation NLL of the mean of the views' softmax ((V, N, K) logits).

    1.0 when the mean is right on every validation image: the NLL then falls monotonically as T -> 0 and no
    maximum-likelihood temperature exists (as :func:`medimg.training.calibration.fit_temperature`).
    """
    labels = list(range(view_logits.shape[-1]))
    if len(y) and bool((softmax(view_logits, 1.0).mean(0).argmax(1) == y).all()):
        return 1.0
    return float(minimize_scalar(lambda t: log_loss(y, softmax(view_logits, t).mean(0), labels=labels),
                                 bounds=(0.05, 20.0), method="bounded").x)


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Errors, accuracy, AUROC (one-vs-rest macro for K > 2) and NLL of (N, K) probabilities."""
    auroc = roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr")
    return {"errors": int((p.argmax(1) != y).sum()), "accuracy": round(float((p.argmax(1) == y).mean()), 4),
            "auroc": round(float(auroc), 4), "nll": round(float(log_loss(y, p, labels=list(range(p.shape[1])))), 4)}


def study(name: str) -> dict[str, object]:
    """Plain vs TTA-mean on the validation and test splits of one shipped model."""
    net, spec = load_model(ROOT / "weights" / f"{name}.json", device="cpu")
    pp = spec.preprocess
    fill = [-m / s for m, s in zip(pp.mean, pp.std, strict=True)]
    logits, ys = {}, {}
    for split in ("val", "test"):
        s = load_task_split(spec_task(spec), split, pp, None)
        with torch.inference_mode():
            logits[split] = tta_logits(net, normalise_batch(torch.as_tensor(s.x), pp), spec.tta, fill, 64).numpy()
        ys[split] = s.y.numpy()
    t_plain, t_mean = fit_t(logits["val"][:1], ys["val"]), fit_t(logits["val"], ys["val"])
    out: dict[str, object] = {"model": name, "views": list(spec.tta)}
    for split in ("val", "test"):
        out[split] = {"plain": scores(softmax(logits[split][0], t_plain), ys[split]),
                      "tta_mean": scores(softmax(logits[split], t_mean).mean(0), ys[split])}
    return out


def print_studies(study_one: Callable[[str], dict[str, object]], doc: str) -> None:
    """The command line shared by the per-model studies: shipped model names in, one JSON line per model out."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("models", nargs="+")
    for name in p.parse_args().models:
        print(json.dumps(study_one(name)), flush=True)


def main() -> None:
    """Print one JSON line per model."""
    print_studies(study, __doc__)


if __name__ == "__main__":
    main()
