"""Applicability gate: does this image fit the model? Checked before a prediction is shown.

Each check gives a verdict with a reason a clinician can read. A failed check does not block the user: the
app shows the reason and lets the user proceed, keeping the warning beside the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimg.io.image import MedicalImage
from medimg.preprocess import MIN_INPUT_SIDE, Preprocessed
from medimg.spec import ModelSpec

__all__ = ["GateCheck", "GateVerdict", "check_image"]

#: Display-range standard deviation under which an image counts as blank / near-constant.
BLANK_STD = 0.01


@dataclass(frozen=True)
class GateCheck:
    """One applicability check.

    Attributes
    ----------
    name : str
        ``"modality"``, ``"body part"``, ``"channels"``, ``"size"``, ``"content"``, ``"distribution"``.
    passed : bool
    reason : str
        Why it passed or failed, for the user.
    value : float or str or None
        The measured value (e.g. the out-of-distribution score).
    """

    name: str
    passed: bool
    reason: str
    value: Any = None


@dataclass(frozen=True)
class GateVerdict:
    """All checks of one image. ``passed`` is True only when every check passed."""

    checks: tuple[GateCheck, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"passed": self.passed,
                "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason,
                            "value": c.value if isinstance(c.value, (int, float, str, type(None))) else str(c.value)}
                           for c in self.checks]}


def check_image(image: MedicalImage, pre: Preprocessed, spec: ModelSpec) -> list[GateCheck]:
    """Checks that need no network: DICOM modality/body part, channels, size and blank content.

    Parameters
    ----------
    image : MedicalImage
    pre : Preprocessed
        The image's preprocessing for ``spec``.
    spec : ModelSpec
        ``modalities`` and ``body_parts`` list what the model was trained on (Modality (0008,0060),
        Body Part Examined (0018,0015)).

    Returns
    -------
    list of GateCheck
    """
    checks: list[GateCheck] = []
    modality = image.metadata.get("Modality", "")
    if image.format == "dicom" and spec.modalities:
        if not modality:
            checks.append(GateCheck("modality", True, "The DICOM does not state its modality; not checked."))
        elif modality.upper() in spec.modalities:
            checks.append(GateCheck("modality", True, f"Modality {modality} is one the model was trained on.", modality))
        else:
            checks.append(GateCheck("modality", False, f"Modality {modality} is not what the model was trained on "
                                    f"({', '.join(spec.modalities)}).", modality))
    body = image.metadata.get("Body Part Examined", "")
    if image.format == "dicom" and spec.body_parts and body:
        ok = body.upper() in spec.body_parts
        checks.append(GateCheck("body part", ok, f"Body part {body} " + (
            "matches the model." if ok else f"is not what the model was trained on ({', '.join(spec.body_parts)})."), body))
    if image.is_color and spec.preprocess.in_chans == 1:
        checks.append(GateCheck("channels", False, "The image is in colour; the model was trained on grayscale "
                                "images, so it was converted to grayscale.", "RGB"))
    rows, cols = image.shape[:2]
    need = min(spec.preprocess.input_size)
    if min(rows, cols) < need:
        checks.append(GateCheck("size", False, f"The image ({rows} x {cols}) is smaller than the model input "
                                f"({need} px): it was enlarged, so fine detail is missing.", min(rows, cols)))
    elif min(rows, cols) < MIN_INPUT_SIDE:  # pragma: no cover - preprocess refuses these
        checks.append(GateCheck("size", False, "The image is too small.", min(rows, cols)))
    std = float(np.std(pre.image))
    if std < BLANK_STD:
        checks.append(GateCheck("content", False, "The image is blank or nearly constant: there is nothing for "
                                "the model to analyse.", std))
    else:
        checks.append(GateCheck("content", True, "The image has visible content.", std))
    return checks
