"""Which of several models of one task is better on validation? (and, for the record, on test)

Candidates of one task may differ in input size, architecture or recipe, so each is evaluated at its own
preprocessing (``ModelSpec.preprocess``) with its own calibration temperature (``ModelSpec.temperature``, fitted on
validation by ``medimg finalise``). For each model and split it prints errors, accuracy, AUROC (one-vs-rest macro
for more than two classes) and the negative log-likelihood (NLL) of the calibrated probabilities. A shipping rule
that is fixed before training reads the validation rows only; where validation AUROC ties (a validation split the
shipped model already separates perfectly), the NLL, a proper scoring rule, still ranks the candidates.

Usage::

    uv run python bench/val_compare.py weights/pbc_blood_mobilenet_v2_224.json \
        runs/pbc_288/pbc_blood_mobilenet_v2_288_seed2.json

Prints one JSON line. Cost on 2 CPU threads: about 1 minute per model and 1,000 images at 224 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from soup import logits_of  # bench/ is the script's folder
from tta_mean import scores

from medimg.models import load_model
from medimg.predict import softmax
from medimg.preprocess import normalise_batch
from medimg.spec import spec_task
from medimg.training.tasks import load_task_split


def main() -> None:
    """Print every model's validation and test scores at its own preprocessing and temperature (one JSON line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", type=Path)
    a = p.parse_args()
    out: dict[str, object] = {}
    tasks = set()
    splits: dict[tuple[str, object, str], tuple[torch.Tensor, np.ndarray]] = {}  # images read once per preprocessing
    for path in a.specs:
        net, spec = load_model(path, device="cpu")
        net.eval()
        tasks.add(spec_task(spec))
        row: dict[str, object] = {"input": list(spec.preprocess.input_size), "temperature": round(spec.temperature, 4)}
        for split in ("val", "test"):
            key = (spec_task(spec), spec.preprocess, split)
            if key not in splits:
                d = load_task_split(spec_task(spec), split, spec.preprocess, None)
                splits[key] = normalise_batch(torch.as_tensor(d.x), spec.preprocess), np.asarray(d.y)
            x, y = splits[key]
            row[split] = scores(softmax(logits_of(net, x), spec.temperature), y)
        out[spec.name] = row
        del net
    if len(tasks) != 1:
        raise SystemExit(f"All specs must be of one task, got {sorted(tasks)}.")
    out = {"task": tasks.pop()} | out
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
