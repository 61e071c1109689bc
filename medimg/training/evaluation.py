"""Evaluating a trained model on a data split of its task (``medimg evaluate``): the EvalReport stored beside
the weights, which the dashboard plots.
"""

from __future__ import annotations

from pathlib import Path

from medimg.evaluate import EvalReport
from medimg.predict import Predictor, batch_logits, softmax
from medimg.spec import spec_task
from medimg.training.tasks import load_task_split

__all__ = ["evaluate_split"]


def evaluate_split(spec_path: str | Path, split: str = "test", device: str = "auto",
                   limit: int | None = None) -> EvalReport:
    """Run a model over a split of the task it was trained on and build its EvalReport.

    Parameters
    ----------
    spec_path : path
        ``weights/<name>.json`` (the weights beside it are loaded sha256-checked).
    split : {"train", "val", "test"}
    device : str
    limit : int, optional
        At most this many images (quick checks).

    Returns
    -------
    medimg.evaluate.EvalReport
        Calibrated probabilities (the spec's temperature), labels and per-image ids.

    Raises
    ------
    medimg.errors.SpecError
        The spec names no training task, or an unknown one.
    medimg.errors.WeightsError
    """
    pred = Predictor.from_spec(spec_path, device=device)
    spec = pred.spec
    arrays = load_task_split(spec_task(spec), split, spec.preprocess, limit)
    # the same batched, normalising forward pass training used for the report stored beside the weights
    probs = softmax(batch_logits(pred.model, arrays.x, spec.preprocess, pred.device), spec.temperature)
    return EvalReport.build(spec.name, split, list(spec.labels), arrays.y.numpy(), probs, arrays.ids,
                            spec.positive_label, spec.threshold)
