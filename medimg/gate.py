"""Applicability gate: does this image fit the model? Checked before a prediction is shown.

Each check gives a verdict with a reason a clinician can read. A failed check does not block the user: the
app shows the reason and lets the user proceed, keeping the warning beside the result.

Checks without the network (:func:`check_image`): DICOM modality and body part, colour, size, blank content.
The out-of-distribution check (:class:`DistributionGate`): the Mahalanobis distances of the image's pooled
features at several layers, from early (texture, noise, contrast) to penultimate, to the training features, and
(chest models) the score of a logistic discriminator against a reference set of adult chest films, each scaled by
its validation limit and combined by their maximum (see :mod:`medimg.ood`), against a limit set on the
validation split. Serving needs numpy only (no scikit-learn): the discriminator is a dot product. The statistics are fitted offline (``medimg fit-gate``, :mod:`medimg.training.gate_fit`) and
read here from the spec's ``gate`` dict; the features come from the architecture's feature taps
(:func:`medimg.models.feature_extractor`), which share the model's weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.errors import SpecError
from medimg.header_checks import check_header
from medimg.io.image import MedicalImage
from medimg.models import PENULTIMATE, feature_extractor, get_architecture
from medimg.ood import DistributionModel, LayeredDistribution
from medimg.preprocess import Preprocessed
from medimg.spec import ModelSpec

__all__ = ["GateCheck", "GateVerdict", "DistributionGate", "check_image", "check_distribution", "parse_distribution",
           "pooled_features", "BLANK_STD"]

log = logging.getLogger(__name__)

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
    """Checks that need no network: DICOM modality/body part, the header's patient age and view position against
    the training population (:func:`medimg.header_checks.check_header`), channels, size and blank content.

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
    if not image.is_color and spec.preprocess.in_chans == 3:
        checks.append(GateCheck("channels", False, "The image is grayscale; the model was trained on colour "
                                "images (the grayscale was copied into all three channels).", "grayscale"))
    rows, cols = image.shape[:2]
    what = "The image"
    if pre.geometry is not None and pre.geometry.box is not None:  # the model sees only the foreground box
        rows, cols = pre.geometry.region
        what = "The region the model sees (the foreground box)"
    need = min(spec.preprocess.input_size)
    trained = (spec.gate or {}).get("training_image_sides") or {}
    if trained.get("min"):
        # the model learned from images this small (enlarged to its input like this one): smaller than the
        # smallest of them is what lacks detail, not smaller than the input
        need = min(need, int(trained["min"]))
    if min(rows, cols) < need:
        seen = (f"the smallest training image ({need} px short side)" if trained.get("min") and need < min(
            spec.preprocess.input_size) else f"the model input ({need} px)")
        checks.append(GateCheck("size", False, f"{what} ({rows} x {cols}) is smaller than {seen}: it was "
                                "enlarged, so fine detail is missing.", min(rows, cols)))
    checks.extend(GateCheck(c.name, c.passed, c.reason, c.value) for c in check_header(image, spec))
    std = float(np.std(pre.image))
    if std < BLANK_STD:
        checks.append(GateCheck("content", False, "The image is blank or nearly constant: there is nothing for "
                                "the model to analyse.", std))
    else:
        checks.append(GateCheck("content", True, "The image has visible content.", std))
    return checks


def _penultimate_name(architecture: str) -> str:
    try:
        return get_architecture(architecture).penultimate_description
    except SpecError:
        return "penultimate"


def parse_distribution(spec: ModelSpec) -> tuple[LayeredDistribution, dict[str, Any]] | None:
    """The fitted statistics of ``spec.gate["distribution"]`` and their threshold, quantile and domain.

    Returns
    -------
    (LayeredDistribution, dict) or None
        None when no gate is fitted.

    Raises
    ------
    SpecError
        Malformed gate parameters.
    """
    d = spec.gate.get("distribution") if isinstance(spec.gate, dict) else None
    if not d:
        return None
    if not isinstance(d, dict):
        raise SpecError(f"The gate of {spec.name} is malformed (distribution is not an object).")
    if "layers" in d:
        model = LayeredDistribution.from_dict(d["layers"], d.get("discriminator"))
    else:  # a gate fitted on the penultimate layer alone (distance, not scaled)
        model = LayeredDistribution.single(_penultimate_name(spec.architecture),
                                           DistributionModel.from_dict(d.get("model", {})))
    try:
        threshold, quantile = float(d["threshold"]), float(d["quantile"])
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"The gate of {spec.name} has no valid threshold/quantile.") from err
    if not (threshold > 0 and 0 < quantile < 1):
        raise SpecError(f"The gate of {spec.name} has an invalid threshold {threshold} or quantile {quantile}.")
    return model, {"threshold": threshold, "quantile": quantile,
                   "domain": str(d.get("domain", "images")), "architecture": spec.architecture}


def _limit_text(quantile: float) -> str:
    return f"{quantile * 100:g} %"


def check_distribution(gate: DistributionGate, pre: Preprocessed) -> list[GateCheck]:
    """Out-of-distribution check: is the image like the images the model was trained on?

    Parameters
    ----------
    gate : DistributionGate
        The model's fitted statistics and feature taps (``Predictor.distribution_gate``).
    pre : Preprocessed
        The image's preprocessing for this model.

    Returns
    -------
    list of GateCheck
        One ``"distribution"`` check: failed when the Mahalanobis distance is above the limit set on the
        validation split, ``value`` = the distance; passed with "not checked" when no gate was fitted.

    """
    if gate.model is None:
        return [GateCheck("distribution", True, "No out-of-distribution check is fitted for this model; "
                          "not checked.")]
    model, info = gate.model, gate.info
    per_layer = model.layer_scores(gate.features(pre.model_input[None]))[:, 0]  # (L,)
    score = float(per_layer.max())
    limit, q, domain = info["threshold"], info["quantile"], info["domain"]
    if not np.isfinite(score):
        return [GateCheck("distribution", False, "The out-of-distribution score could not be computed.", score)]
    if len(per_layer) == 1:  # penultimate layer only: the score is a Mahalanobis distance
        if score <= limit:
            return [GateCheck("distribution", True, f"The image resembles the {domain} the model was trained on "
                              f"(distance {score:.1f}; {_limit_text(q)} limit {limit:.1f}).", round(score, 3))]
        return [GateCheck("distribution", False, f"This image looks unlike the {domain} the model was trained on "
                          f"(distance {score:.0f} vs {_limit_text(q)} limit {limit:.0f}; {_limit_text(q)} of "
                          "validation images are within the limit). The prediction may be meaningless.",
                          round(score, 3))]
    if score <= limit:
        return [GateCheck("distribution", True, f"The image resembles the {domain} the model was trained on "
                          f"(score {score:.2f}; {_limit_text(q)} limit {limit:.2f}).", round(score, 3))]
    worst = int(per_layer.argmax())
    if model.discriminator is not None and worst == len(model.models):
        return [GateCheck("distribution", False, f"This image looks unlike the {domain} the model was trained on: "
                          f"it resembles {model.discriminator.reference}, which the model was not made for "
                          f"({score / limit:.1f} times the {_limit_text(q)} limit; score {score:.2f} vs {limit:.2f}; "
                          f"{_limit_text(q)} of validation images are within the limit). The prediction may be "
                          "meaningless.", round(score, 3))]
    n_layers = len(model.models)
    what = ("low-level image statistics (texture, noise, contrast)" if worst == 0 else "high-level features"
            if worst == n_layers - 1 else "mid-level features (local patterns)")
    return [GateCheck("distribution", False, f"This image looks unlike the {domain} the model was trained on: "
                      f"its {what} are {score / limit:.1f} times as far from the training images as the "
                      f"{_limit_text(q)} limit (score {score:.2f} vs {limit:.2f}; {_limit_text(q)} of validation "
                      "images are within the limit). The prediction may be meaningless.", round(score, 3))]

def pooled_features(extractor: nn.Module, stage_names: tuple[str, ...], x: np.ndarray, device: torch.device,
                    batch_size: int = 64) -> list[np.ndarray]:
    """Channel means of each stage layer and the penultimate features, batched, without hooks.

    Parameters
    ----------
    extractor : torch.nn.Module
        :func:`medimg.models.feature_extractor` of the model (``stages=bool(stage_names)``).
    stage_names : tuple of str
        The architecture's ``stage_layers`` (empty: the penultimate features alone).
    x : (N, C, H, W) float32 ndarray
        Normalised model inputs.
    device : torch.device
    batch_size : int

    Returns
    -------
    list of (N, D_l) float64 ndarray
        One per stage name (spatial mean per channel), then the penultimate features.
    """
    parts: list[list[np.ndarray]] = []
    n = len(x)
    with torch.inference_mode():
        for i in range(0, max(n, 1), batch_size):
            chunk = x[i : i + batch_size] if n else np.zeros((1, *x.shape[1:]), np.float32)
            out = extractor(torch.as_tensor(np.ascontiguousarray(chunk), dtype=torch.float32).to(device))
            layers = [out[name].mean(dim=(2, 3)) for name in stage_names] + [out[PENULTIMATE]]
            parts.append([f.double().cpu().numpy()[: len(chunk) if n else 0] for f in layers])
    return [np.concatenate(layer) for layer in zip(*parts, strict=True)]


class DistributionGate:
    """The fitted out-of-distribution check of one model: its statistics (from the spec) and feature taps.

    Built once per :class:`medimg.predict.Predictor` (it is immutable afterwards and safe to share between
    threads: the feature extractor calls the model's own modules and keeps no state).

    Parameters
    ----------
    spec : ModelSpec
        ``spec.gate["distribution"]`` holds the statistics; absent means "not fitted" (:attr:`fitted` False).
    model : torch.nn.Module
        The network, in eval mode (shared, never mutated).
    device : torch.device

    Raises
    ------
    SpecError
        Malformed gate statistics, or statistics fitted on other layers than this version's feature taps.
    """

    def __init__(self, spec: ModelSpec, model: nn.Module, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        parsed = parse_distribution(spec)
        self.model: LayeredDistribution | None = None if parsed is None else parsed[0]
        self.info: dict[str, Any] = {} if parsed is None else parsed[1]
        self._extractor: nn.Module | None = None
        if self.model is not None:
            arch = get_architecture(spec.architecture)
            self.stages = len(self.model.models) > 1
            if self.stages and tuple(self.model.layers[:-1]) != arch.stage_layers:
                raise SpecError(f"The gate of {spec.name} was fitted on layers {list(self.model.layers[:-1])}, "
                                "this version of medimg reads other layers: run `medimg fit-gate` again.")
            self._extractor = feature_extractor(model, spec.architecture, stages=self.stages)
            self._stage_names = arch.stage_layers if self.stages else ()

    @property
    def fitted(self) -> bool:
        """True when the spec holds fitted statistics."""
        return self.model is not None

    def features(self, x: np.ndarray, batch_size: int = 64) -> list[np.ndarray]:
        """Per-layer features the statistics were fitted on.

        Parameters
        ----------
        x : (N, C, H, W) float32 ndarray
            Normalised model inputs.
        batch_size : int

        Returns
        -------
        list of (N, D_l) float64 ndarray
            Channel means of each stage layer, then the penultimate features (only those for a one-layer gate).

        Raises
        ------
        SpecError
            Not fitted, or feature sizes that differ from the fitted statistics.
        """
        if self._extractor is None or self.model is None:
            raise SpecError(f"No out-of-distribution statistics are fitted for {self.spec.name}.")
        feats = pooled_features(self._extractor, self._stage_names, x, self.device, batch_size)
        if [f.shape[1] for f in feats] != [m.feature_dim for m in self.model.models]:
            raise SpecError(f"The gate of {self.spec.name} was fitted on layers of "
                            f"{[m.feature_dim for m in self.model.models]} features, the model gives "
                            f"{[f.shape[1] for f in feats]}: run `medimg fit-gate` again.")
        return feats

    def scores(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Combined out-of-distribution scores, (N,) float64 (> ``info["threshold"]``: out of distribution)."""
        assert self.model is not None
        return self.model.score(self.features(x, batch_size))

    def check(self, pre: Preprocessed) -> list[GateCheck]:
        """Out-of-distribution check: is the image like the images the model was trained on?

        Parameters
        ----------
        pre : Preprocessed
            The image's preprocessing for this model.

        Returns
        -------
        list of GateCheck
            One ``"distribution"`` check: failed when the score is above the limit set on the validation split
            (``value`` = the score); passed with "not checked" when no gate was fitted.
        """
        return check_distribution(self, pre)
