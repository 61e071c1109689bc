"""Temperature scaling fitted on the validation split (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017). Serving applies the fitted temperature through :func:`medimg.predict.softmax`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from medimg.evaluate import EvalReport, compute_metrics
from medimg.predict import batch_logits, softmax
from medimg.spec import ModelSpec
from medimg.training.data import SplitArrays

__all__ = ["fit_temperature", "calibrate_and_report"]

log = logging.getLogger(__name__)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the validation NLL of ``softmax(logits / T)`` (Guo et al., ICML 2017).

    Parameters
    ----------
    logits : (N, K) float ndarray
    y : (N,) int ndarray

    Returns
    -------
    float, clipped to [0.05, 20]
        1.0 when every validation image is classified correctly: the NLL then falls monotonically as T -> 0,
        so the maximum-likelihood temperature does not exist and any fitted value would only sharpen the
        probabilities towards 0/1 (a small, perfectly separated validation split says nothing about calibration).
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.int64)
    if len(t) and bool((z.argmax(1) == t).all()):
        log.warning("every validation image is classified correctly: the temperature is not identifiable, T = 1")
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def calibrate_and_report(net: nn.Module, spec: ModelSpec, val: SplitArrays, test: SplitArrays,
                         device: torch.device) -> tuple[ModelSpec, EvalReport]:
    """Fit the temperature on the validation split and evaluate on the test split.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network (eval mode), on ``device``.
    spec : ModelSpec
        Its spec (preprocessing, labels, positive label).
    val, test : medimg.training.data.SplitArrays
        Preprocessed validation and test splits (x float32 in [0, 1]).
    device : torch.device

    Returns
    -------
    (ModelSpec, EvalReport)
        The spec with ``temperature`` and ``metrics["test"]`` (calibrated; ``ece_uncalibrated`` beside), and
        the test EvalReport (calibrated probabilities per image).

    Notes
    -----
    Temperature scaling: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """
    pp, pos = spec.preprocess, spec.positive_label
    val_logits = batch_logits(net, val.x, pp, device)
    temperature = fit_temperature(val_logits, val.y.numpy())
    test_logits = batch_logits(net, test.x, pp, device)
    probs = softmax(test_logits, temperature)
    report = EvalReport.build(spec.name, "test", list(spec.labels), test.y.numpy(), probs, test.ids, pos)
    uncal = compute_metrics(test.y.numpy(), softmax(test_logits), pos)
    summary = {k: v for k, v in report.metrics.items() if k not in ("confusion_matrix",)}
    summary["ece_uncalibrated"] = uncal["ece"]
    return spec.replace(temperature=temperature, metrics={**spec.metrics, "test": summary}), report
