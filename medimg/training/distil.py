"""Knowledge distillation: one network trained to match the mean probability of several trained networks.

An ensemble of independently trained networks (Lakshminarayanan et al. 2017) is often more accurate than any of
its members but costs one forward pass, one Grad-CAM and one applicability gate per member. Distillation
(Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531, 2015) trains a single
student on the ensemble's softened probabilities next to the labels, so that one network is served.

The teachers see the same augmented batch as the student ("consistent teaching": Beyer et al., "Knowledge
distillation: A good teacher is patient and consistent", CVPR 2022), each through its own calibration
temperature, so the target is the mean of the members' calibrated probabilities softened by the distillation
temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medimg.errors import SpecError
from medimg.models import load_model
from medimg.spec import ModelSpec, PreprocessConfig

__all__ = ["Teacher", "distillation_loss", "load_teachers", "teacher_probabilities"]


@dataclass(frozen=True)
class Teacher:
    """One trained network of the ensemble a student learns from.

    Attributes
    ----------
    model : torch.nn.Module
        The network in eval mode, its parameters frozen.
    spec : ModelSpec
        Its spec (name, sha256, calibration temperature).
    """

    model: nn.Module
    spec: ModelSpec

    def as_dict(self) -> dict[str, Any]:
        """What a student's spec records of this teacher: name, sha256 and calibration temperature."""
        return {"name": self.spec.name, "sha256": self.spec.sha256, "temperature": self.spec.temperature}


def load_teachers(paths: tuple[str, ...] | list[str], pp: PreprocessConfig, labels: tuple[str, ...] | list[str],
                  device: torch.device) -> list[Teacher]:
    """Load the teachers' specs and sha256-verified weights and check that they fit the student.

    Parameters
    ----------
    paths : sequence of str
        Spec JSON files (the weights are ``<name>.safetensors`` beside each).
    pp : PreprocessConfig
        The student's preprocessing: each teacher must read the same tensor (input size, channels, mean, std,
        resize and intensity steps), since it sees the student's augmented batch.
    labels : sequence of str
        The student's class names, in order.
    device : torch.device

    Returns
    -------
    list of Teacher
        In eval mode, gradients off.

    Raises
    ------
    SpecError
        No teacher given, a teacher with other labels or other preprocessing, or an invalid spec.
    WeightsError
        A weights file that is missing or fails its sha256 (:func:`medimg.models.load_model`).
    """
    if not paths:
        raise SpecError("distillation needs at least one teacher spec (--teacher SPEC.json)")
    teachers = []
    for p in paths:
        model, spec = load_model(Path(p), device=device)
        if tuple(spec.labels) != tuple(labels):
            raise SpecError(f"teacher {spec.name} predicts {list(spec.labels)}, the student {list(labels)}")
        if spec.preprocess != pp:  # load_spec gives tuples, as the training's PreprocessConfig has
            raise SpecError(f"teacher {spec.name} reads its input differently from the student (preprocessing "
                            f"{spec.preprocess} vs {pp}); it must see the same tensor")
        for param in model.parameters():
            param.requires_grad_(False)
        teachers.append(Teacher(model.eval(), spec))
    return teachers


@torch.no_grad()
def teacher_probabilities(teachers: list[Teacher], xb: torch.Tensor, tau: float = 1.0,
                          autocast: bool = False) -> torch.Tensor:
    """Mean over the teachers of their calibrated probabilities, softened by ``tau``.

    Parameters
    ----------
    teachers : list of Teacher
    xb : torch.Tensor
        The student's (augmented, normalised) batch, shape (N, C, H, W), float.
    tau : float
        Distillation temperature (> 0); member ``i`` contributes ``softmax(z_i / (T_i * tau))`` with ``T_i``
        its calibration temperature.
    autocast : bool
        bfloat16 autocast for the teachers' forward passes (as in the student's).

    Returns
    -------
    torch.Tensor
        Shape (N, K), float32, rows summing to 1.
    """
    if tau <= 0:
        raise ValueError(f"the distillation temperature must be > 0, got {tau}")
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = [t.model(xb).float() for t in teachers]
    return torch.stack([torch.softmax(z / (float(t.spec.temperature) * tau), dim=1)
                        for z, t in zip(logits, teachers, strict=True)]).mean(0)


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Per-sample distillation loss ``tau**2 * KL(teacher || softmax(student / tau))`` (Hinton et al. 2015, eq. 2).

    The ``tau**2`` keeps the gradients' scale independent of ``tau``, so the weight between this term and the
    cross-entropy on the labels means the same at every temperature.

    Parameters
    ----------
    student_logits : torch.Tensor
        Shape (N, K), float.
    teacher_probs : torch.Tensor
        Shape (N, K), rows summing to 1 (:func:`teacher_probabilities` at the same ``tau``).
    tau : float
        Distillation temperature (> 0).

    Returns
    -------
    torch.Tensor
        Shape (N,), >= 0 (0 where the student's softened probabilities equal the teacher's).
    """
    if tau <= 0:
        raise ValueError(f"the distillation temperature must be > 0, got {tau}")
    log_q = torch.log_softmax(student_logits.float() / tau, dim=1)
    # torch's KL (p log p - p log q per class, 0 where p = 0)
    return nn.functional.kl_div(log_q, teacher_probs.float(), reduction="none").sum(dim=1) * tau * tau
