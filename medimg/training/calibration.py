"""Temperature scaling fitted on the validation split (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017). Serving applies the fitted temperature through :func:`medimg.predict.softmax`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["fit_temperature"]


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the validation NLL of ``softmax(logits / T)`` (Guo et al., ICML 2017).

    Parameters
    ----------
    logits : (N, K) float ndarray
    y : (N,) int ndarray

    Returns
    -------
    float, clipped to [0.05, 20]
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.int64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))
