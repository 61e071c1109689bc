"""Serving checks read from the DICOM header alone: patient age and view position, and which model fits best.

No network, no torch: these run before (or instead of) the model. They complement :func:`medimg.gate.check_image`
(modality and body part) with what a clinician would check first:

- **patient age**: Patient's Age (0010,1010) (kept by :mod:`medimg.io` only as whole years, capped at 90) against
  the age range of the model's training population (:data:`POPULATIONS`, keyed by the training data set named in
  the spec's ``training["data"]``; a spec may state its own as ``training["population"]["age_years"]``).
  The paediatric chest X-ray model (Kermany et al. 2018: children aged 1-5) must not pass adult films.
- **view position**: View Position (0018,5101) of a chest radiograph model trained on frontal (AP/PA) films;
  a lateral view fails.
- :func:`suggest_model`: from Modality (0008,0060) and Body Part Examined (0018,0015), the model whose spec lists
  both, when the selected one does not.

A check that cannot be made (no DICOM, no age in the header, no population for the model) is not reported:
absence is not evidence. Every check has the fields of :class:`medimg.gate.GateCheck` (name, passed, reason,
value), so the gate can adopt them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from medimg.io.image import MedicalImage
    from medimg.spec import ModelSpec


__all__ = ["HeaderCheck", "Population", "POPULATIONS", "FRONTAL_VIEWS", "population_of", "check_header",
           "header_fit", "suggest_model"]


@dataclass(frozen=True)
class HeaderCheck:
    """One header check; the same fields as :class:`medimg.gate.GateCheck`.

    Attributes
    ----------
    name : str
        ``"patient age"`` or ``"view position"``.
    passed : bool
    reason : str
        Why, for the user (an age band, never the exact age above 89).
    value : int or str or None
        The age in whole years (capped at 90) or the View Position.
    """

    name: str
    passed: bool
    reason: str
    value: int | str | None = None


@dataclass(frozen=True)
class Population:
    """The patients a model's training images came from.

    Attributes
    ----------
    min_years, max_years : float
        Inclusive age range in years.
    description : str
        E.g. ``"children aged 1-5 (Kermany et al. 2018)"``.
    frontal_only : bool
        The training films are frontal chest radiographs (AP/PA) only.
    """

    min_years: float
    max_years: float
    description: str
    frontal_only: bool = False


#: Training populations by data set name (matched against the spec's ``training["data"]``).
#:
#: References: Kermany D. S. et al., "Identifying medical diagnoses and treatable diseases by image-based deep
#: learning", Cell 172(5), 2018 (paediatric patients aged one to five, Guangzhou Women and Children's Medical
#: Center, anterior-posterior chest radiographs); PneumoniaMNIST (Yang et al., Scientific Data 10, 2023) is built
#: from the same images.
POPULATIONS: dict[str, Population] = {
    "kermany-cxr": Population(1, 5, "children aged 1-5 (Kermany et al. 2018)", frontal_only=True),
    "pneumoniamnist": Population(1, 5, "children aged 1-5 (PneumoniaMNIST, from Kermany et al. 2018)",
                                 frontal_only=True),
}
#: View Position (0018,5101) values of frontal chest films.
FRONTAL_VIEWS = frozenset({"AP", "PA"})


def population_of(spec: ModelSpec) -> Population | None:
    """The training population of ``spec``, or None when unknown.

    ``spec.training["population"] = {"age_years": [min, max], "description": str, "frontal_only": bool}`` wins;
    otherwise the data set named in ``spec.training["data"]`` is looked up in :data:`POPULATIONS`.
    """
    training = spec.training if isinstance(spec.training, dict) else {}
    own = training.get("population")
    if isinstance(own, dict) and isinstance(own.get("age_years"), (list, tuple)) and len(own["age_years"]) == 2:
        lo, hi = (float(v) for v in own["age_years"])
        return Population(lo, hi, str(own.get("description", f"patients aged {lo:g}-{hi:g}")),
                          bool(own.get("frontal_only", False)))
    data = str(training.get("data", "")).lower()
    for name, pop in POPULATIONS.items():
        if data.endswith(name) or data.endswith(":" + name):
            return pop
    return None


def _band(years: int) -> str:
    if years >= 90:
        return "90 years or older"
    if years >= 18:
        return f"an adult ({years} years)"
    return f"{years} year(s)"


def check_header(image: MedicalImage, spec: ModelSpec) -> tuple[HeaderCheck, ...]:
    """Header checks of ``image`` for the model ``spec``.

    Parameters
    ----------
    image : MedicalImage
        ``patient_age_years`` and ``metadata["View Position"]`` are read (DICOM only).
    spec : ModelSpec

    Returns
    -------
    tuple of HeaderCheck
        Only the checks that could be made; empty for raster images or when the model's population is unknown.

    References
    ----------
    DICOM PS3.3 C.7.1.3 (Patient's Age (0010,1010)), C.8.11.5 (View Position (0018,5101)); PS3.5 6.2 (AS).
    """
    if image.format != "dicom":
        return ()
    pop = population_of(spec)
    if pop is None:
        return ()
    out: list[HeaderCheck] = []
    age = image.patient_age_years
    if age is not None:
        ok = pop.min_years <= age <= pop.max_years
        out.append(HeaderCheck(
            "patient age", ok,
            f"The header gives the patient's age as {_band(age)}; the model was trained on {pop.description}."
            + ("" if ok else " Its output does not apply to this patient."), age))
    view = image.metadata.get("View Position", "").strip().upper()
    if pop.frontal_only and view:
        ok = view in FRONTAL_VIEWS
        out.append(HeaderCheck(
            "view position", ok,
            f"View Position {view}: " + ("a frontal film, as the model was trained on." if ok
                                         else "not a frontal (AP/PA) film; the model was trained on frontal films only."),
            view))
    return tuple(out)


def header_fit(image: MedicalImage, spec: ModelSpec) -> int:
    """How well the header matches ``spec``: +1 per matching Modality / Body Part Examined, -1 per mismatch,
    -1 per failed :func:`check_header` check; 0 when the header says nothing (raster images)."""
    if image.format != "dicom":
        return 0
    score = 0
    modality = image.metadata.get("Modality", "").strip().upper()
    body = image.metadata.get("Body Part Examined", "").strip().upper()
    if modality and spec.modalities:
        score += 1 if modality in spec.modalities else -1
    if body and spec.body_parts:
        score += 1 if body in spec.body_parts else -1
    score -= sum(not c.passed for c in check_header(image, spec))
    return score


def suggest_model(image: MedicalImage, selected: ModelSpec, candidates: Sequence[ModelSpec]) -> ModelSpec | None:
    """A model that fits the header better than ``selected``, or None.

    Parameters
    ----------
    image : MedicalImage
    selected : ModelSpec
        The model the user chose.
    candidates : sequence of ModelSpec
        All models on offer (``selected`` may be among them).

    Returns
    -------
    ModelSpec or None
        The candidate with the highest :func:`header_fit` (ties: the first), when it is strictly higher than the
        selected model's and positive (the header names a modality or body part it was trained on).
    """
    if image.format != "dicom":
        return None
    mine = header_fit(image, selected)
    best, best_score = None, mine
    for spec in candidates:
        if spec.name == selected.name:
            continue
        s = header_fit(image, spec)
        if s > best_score:
            best, best_score = spec, s
    return best if best is not None and best_score > 0 else None
