"""Grade-aware training loss for Bethesda cell classes (``medimg train --grade-weight``).

Six-class cervical cytology (NILM, ASC-US, LSIL, ASC-H, HSIL, SCC) decides follow-up by grade: low-grade
(ASC-US, LSIL) against high-grade (ASC-H, HSIL, SCC; The Bethesda System, Nayar & Wilbur 2015, ch. 5). Plain
cross-entropy charges calling an ASC-H cell HSIL (same grade, same referral) as much as calling it NILM (a missed
high-grade lesion). The auxiliary term here adds the negative log-likelihood of the true *grade*, whose probability
is the sum of its classes' softmax probabilities (the same sum :func:`medimg.screening.grade_probs` shows
clinicians), so probability mass leaking out of the right grade costs more than mass moving inside it.

The shipped network is unchanged (same classes, same head); only the training loss differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medimg.screening import grade_probs

__all__ = ["grade_membership", "grade_nll"]


def grade_membership(labels: Sequence[str], grades: dict[str, str] | None = None) -> tuple[torch.Tensor,
                                                                                             tuple[str, ...]]:
    """Which class belongs to which grade.

    Parameters
    ----------
    labels : sequence of str
        The K class names in the network's output order.
    grades : dict, optional
        Class name -> grade; default :data:`medimg.screening.BETHESDA_GRADES`.

    Returns
    -------
    membership : (K, G) bool tensor
        ``membership[k, g]`` is True when class ``k`` belongs to grade ``g``; every row has exactly one True.
    names : tuple of str
        The G grades present, in :data:`medimg.screening.GRADE_ORDER` (then order of appearance), exactly as
        :func:`medimg.screening.grade_probs` orders them.

    Raises
    ------
    ValueError
        A label has no grade, or all labels fall in one grade (the term would be constant zero).
    """
    try:  # a class's membership row is its one-hot probability summed by grade: screening's own mapping and order
        one_hot, names = grade_probs(np.eye(len(labels)), labels, grades)
    except ValueError as e:
        raise ValueError(f"no Bethesda grade for these labels ({e}): --grade-weight needs Bethesda classes") from None
    if len(names) < 2:
        raise ValueError(f"all classes fall in one grade ({names[0]!r}): a grade loss would be constant")
    return torch.from_numpy(one_hot > 0.5), names


def grade_nll(logits: torch.Tensor, target: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """Per-sample negative log-likelihood of the true class's grade.

    ``-log sum_{k in grade(y)} softmax(logits)_k``, computed stably as ``logsumexp`` over the grade's logits minus
    ``logsumexp`` over all logits.

    Parameters
    ----------
    logits : (N, K) float tensor
        Raw network outputs.
    target : (N,) int64 tensor
        True class indices in ``[0, K)``.
    membership : (K, G) bool tensor
        From :func:`grade_membership` (on any device; moved to ``logits``'s).

    Returns
    -------
    (N,) float tensor
        Non-negative losses in nats; 0 when all probability lies inside the true grade.

    Raises
    ------
    ValueError
        ``logits`` and ``membership`` disagree on K, or ``target`` is not (N,).
    """
    if logits.ndim != 2 or membership.ndim != 2 or logits.shape[1] != membership.shape[0]:
        raise ValueError(f"logits (N, K) and membership (K, G) must agree on K: {tuple(logits.shape)} vs "
                         f"{tuple(membership.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must be ({logits.shape[0]},), got {tuple(target.shape)}")
    m = membership.to(logits.device)
    in_true_grade = m[:, m[target].float().argmax(1)].T  # (N, K): classes that share the target's grade
    masked = logits.masked_fill(~in_true_grade, float("-inf"))
    return torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)
