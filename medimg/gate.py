"""Applicability gate: does this image fit the model? Checked before a prediction is shown.

Each check gives a verdict with a reason a clinician can read. A failed check does not block the user: the
app shows the reason and lets the user proceed, keeping the warning beside the result.

Checks without the network (:func:`check_image`): DICOM modality and body part, colour, size, blank content.
The out-of-distribution check (:func:`check_distribution`): the Mahalanobis distances of the image's pooled
features at several layers, from early (texture, noise, contrast) to penultimate, to the training features, each
scaled by its validation limit and combined by their maximum (see :mod:`medimg.calibrate`), against a limit set
on the validation split; :func:`fit_gate` (``medimg fit-gate``) fits it and stores it in the spec's ``gate`` dict.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.calibrate import (
    DistributionModel,
    LayeredDistribution,
    conformal_pass_rate_range,
    conformal_threshold,
)
from medimg.errors import MedimgError, SpecError
from medimg.io.image import MedicalImage
from medimg.preprocess import Preprocessed
from medimg.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from medimg.predict import Predictor

__all__ = ["GateCheck", "GateVerdict", "check_image", "check_distribution", "penultimate_features", "layer_features",
           "fit_gate", "STAGE_LAYERS", "FEATURE_LAYERS"]

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
    if not image.is_color and spec.preprocess.in_chans == 3:
        checks.append(GateCheck("channels", False, "The image is grayscale; the model was trained on colour "
                                "images (the grayscale was copied into all three channels).", "grayscale"))
    rows, cols = image.shape[:2]
    need = min(spec.preprocess.input_size)
    if min(rows, cols) < need:
        checks.append(GateCheck("size", False, f"The image ({rows} x {cols}) is smaller than the model input "
                                f"({need} px): it was enlarged, so fine detail is missing.", min(rows, cols)))
    std = float(np.std(pre.image))
    if std < BLANK_STD:
        checks.append(GateCheck("content", False, "The image is blank or nearly constant: there is nothing for "
                                "the model to analyse.", std))
    else:
        checks.append(GateCheck("content", True, "The image has visible content.", std))
    return checks


# ---------------------------------------------------------------------------------------------------------
# Out-of-distribution check

#: What :func:`penultimate_features` returns per architecture (the classifier head's input).
FEATURE_LAYERS = {
    "smallcnn": "pool (global average of features.relu3)",
    "resnet10": "avgpool (global average of layer4)",
    "resnet10_small": "avgpool (global average of layer4)",
    "resnet18": "avgpool (global average of layer4)",
    "resnet34": "avgpool (global average of layer4)",
    "densenet121": "global average of relu(features.norm5)",
    "efficientnet_b0": "avgpool (global average of features.8)",
    "mobilenet_v3_small": "avgpool (global average of features.12)",
    "convnext_tiny": "classifier.0 (LayerNorm of the global average of features.7)",
}

#: How the fitted gate names the training images in its reasons, per training task.
def _task(task_key: str) -> Any:
    from medimg.train import get_task

    try:
        return get_task(task_key)
    except SpecError:
        return None


def _task_domain(task_key: str) -> str:
    task = _task(task_key)
    return task.domain if task is not None else "images"


_RESNETS = ("resnet10", "resnet10_small", "resnet18", "resnet34")

#: Intermediate layers whose channel means the out-of-distribution gate also models, per architecture (roughly
#: one per resolution stage; :func:`layer_features` adds the penultimate features of :data:`FEATURE_LAYERS`).
STAGE_LAYERS: dict[str, tuple[str, ...]] = {
    "smallcnn": ("features.relu1", "features.relu2"),
    **{a: ("layer1", "layer2", "layer3") for a in _RESNETS},
    "densenet121": ("features.denseblock1", "features.denseblock2", "features.denseblock3"),
    "efficientnet_b0": ("features.2", "features.3", "features.5"),
    "mobilenet_v3_small": ("features.1", "features.3", "features.8"),
    "convnext_tiny": ("features.1", "features.3", "features.5"),
}


def _head_input(m: Any, f: torch.Tensor, architecture: str) -> torch.Tensor:
    """The classifier head's input from the output ``f`` of ``m.features`` (non-ResNet architectures)."""
    import torch
    import torch.nn.functional as F

    if architecture == "smallcnn":
        return m.pool(f).flatten(1)  # (N, 4w)
    if architecture == "densenet121":
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(f), 1), 1)  # (N, 1024)
    if architecture in ("efficientnet_b0", "mobilenet_v3_small"):
        return torch.flatten(m.avgpool(f), 1)  # (N, 1280) / (N, 576)
    if architecture == "convnext_tiny":
        return torch.flatten(m.classifier[0](m.avgpool(f)), 1)  # (N, 768), LayerNorm2d applied
    raise SpecError(f"No out-of-distribution feature layer is known for architecture {architecture!r}.")


def layer_features(model: nn.Module, x: torch.Tensor, architecture: str,
                   stages: bool = True) -> list[torch.Tensor]:
    """Channel means of the :data:`STAGE_LAYERS` outputs, then the penultimate features, in one forward.

    Calls the model's own submodules in the order of its ``forward`` up to the head, so it shares every
    parameter, registers no hooks and changes no state (the model may be shared by concurrent sessions).
    Call it under ``torch.inference_mode()`` on a model in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        Built by :func:`medimg.models.create_model` for ``architecture``.
    x : (N, C, H, W) float32 tensor
        Normalised model input.
    architecture : str
        Key of :data:`FEATURE_LAYERS`.
    stages : bool
        False: only the penultimate features (a one-element list).

    Returns
    -------
    list of (N, D_l) float tensors
        One per name in ``STAGE_LAYERS[architecture]`` (spatial mean per channel), then the penultimate
        features (:func:`penultimate_features`).

    Raises
    ------
    SpecError
        Architecture without known feature layers.
    """
    m: Any = model
    out: list[torch.Tensor] = []
    if architecture in _RESNETS:
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))  # (N, 64, H/4, W/4); no max-pool in resnet10_small
        for name in ("layer1", "layer2", "layer3"):
            x = getattr(m, name)(x)
            if stages:
                out.append(x.mean(dim=(2, 3)))
        x = m.layer4(x)  # (N, 512, H/32, W/32)
        return [*out, m.avgpool(x).flatten(1)]  # (N, 512)
    if architecture not in STAGE_LAYERS:
        raise SpecError(f"No out-of-distribution feature layer is known for architecture {architecture!r}.")
    taps = {name.removeprefix("features.") for name in STAGE_LAYERS[architecture]} if stages else set()
    for name, block in m.features.named_children():
        x = block(x)
        if name in taps:
            out.append(x.mean(dim=(2, 3)))
    return [*out, _head_input(m, x, architecture)]


def penultimate_features(model: nn.Module, x: torch.Tensor, architecture: str) -> torch.Tensor:
    """The globally pooled features the classifier head sees (``layer_features(..., stages=False)[0]``).

    Parameters
    ----------
    model : torch.nn.Module
    x : (N, C, H, W) float32 tensor
        Normalised model input.
    architecture : str
        Key of :data:`FEATURE_LAYERS`.

    Returns
    -------
    (N, D) float tensor
        D = 64 (smallcnn), 256 (resnet10_small), 512 (resnet10/18/34), 1024 (densenet121),
        1280 (efficientnet_b0), 576 (mobilenet_v3_small), 768 (convnext_tiny).

    Raises
    ------
    SpecError
        Architecture without a known feature layer.
    """
    return layer_features(model, x, architecture, stages=False)[0]


def _distribution_state(predictor: Predictor) -> tuple[LayeredDistribution, dict[str, Any]] | None:
    """The parsed gate of ``predictor.spec``, cached on the predictor (model statistics only, no patient data)."""
    spec = predictor.spec
    cached = predictor.__dict__.get("_ood_state")
    if cached is not None and cached[0] is spec:
        return cached[1]
    lock = predictor.__dict__.get("_gate_lock")
    if lock is None:
        state = _parse_distribution(spec)
    else:
        with lock:
            cached = predictor.__dict__.get("_ood_state")
            if cached is not None and cached[0] is spec:
                return cached[1]
            state = _parse_distribution(spec)
    predictor.__dict__["_ood_state"] = (spec, state)
    return state


def _parse_distribution(spec: ModelSpec) -> tuple[LayeredDistribution, dict[str, Any]] | None:
    d = spec.gate.get("distribution") if isinstance(spec.gate, dict) else None
    if not d:
        return None
    if not isinstance(d, dict):
        raise SpecError(f"The gate of {spec.name} is malformed (distribution is not an object).")
    if "layers" in d:
        model = LayeredDistribution.from_dict(d["layers"])
    else:  # a gate fitted on the penultimate layer alone (distance, not scaled)
        model = LayeredDistribution.single(FEATURE_LAYERS.get(spec.architecture, "penultimate"),
                                           DistributionModel.from_dict(d.get("model", {})))
    try:
        threshold, quantile = float(d["threshold"]), float(d["quantile"])
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"The gate of {spec.name} has no valid threshold/quantile.") from err
    if not (threshold > 0 and 0 < quantile < 1):
        raise SpecError(f"The gate of {spec.name} has an invalid threshold {threshold} or quantile {quantile}.")
    return model, {"threshold": threshold, "quantile": quantile,
                   "domain": str(d.get("domain", "images")), "architecture": spec.architecture}


def _features(predictor: Predictor, x: np.ndarray, stages: bool = True, batch_size: int = 64) -> list[np.ndarray]:
    """(N, C, H, W) float32 normalised inputs -> per-layer (N, D_l) float64 features (batched, no hooks)."""
    import torch

    parts: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(x[i : i + batch_size]), dtype=torch.float32)
            fs = layer_features(predictor.model, xb.to(predictor.device), predictor.spec.architecture, stages)
            parts.append([f.double().cpu().numpy() for f in fs])
    if not parts:
        dims = [f.shape[1] for f in layer_features(predictor.model, torch.zeros(1, *x.shape[1:]).to(
            predictor.device), predictor.spec.architecture, stages)] if x.ndim == 4 else []
        return [np.zeros((0, d)) for d in dims]
    return [np.concatenate(layer) for layer in zip(*parts, strict=True)]


def _model_features(predictor: Predictor, model: LayeredDistribution, x: np.ndarray,
                    batch_size: int = 64) -> list[np.ndarray]:
    """The features ``model`` was fitted on (all layers, or the penultimate one for a single-layer gate)."""
    stages = len(model.models) > 1
    if stages and model.layers[:-1] != STAGE_LAYERS.get(predictor.spec.architecture):
        raise SpecError(f"The gate of {predictor.spec.name} was fitted on layers {list(model.layers[:-1])}, this "
                        "version of medimg reads other layers: run `medimg fit-gate` again.")
    feats = _features(predictor, x, stages=stages, batch_size=batch_size)
    if [f.shape[1] for f in feats] != [m.feature_dim for m in model.models]:
        raise SpecError(f"The gate of {predictor.spec.name} was fitted on layers of "
                        f"{[m.feature_dim for m in model.models]} features, the model gives "
                        f"{[f.shape[1] for f in feats]}: run `medimg fit-gate` again.")
    return feats


def _limit_text(quantile: float) -> str:
    return f"{quantile * 100:g} %"


def check_distribution(predictor: Predictor, pre: Preprocessed) -> list[GateCheck]:
    """Out-of-distribution check: is the image like the images the model was trained on?

    Parameters
    ----------
    predictor : medimg.predict.Predictor
        Its ``spec.gate["distribution"]`` holds the statistics fitted by :func:`fit_gate`.
    pre : Preprocessed
        The image's preprocessing for this model.

    Returns
    -------
    list of GateCheck
        One ``"distribution"`` check: failed when the Mahalanobis distance is above the limit set on the
        validation split, ``value`` = the distance; passed with "not checked" when no gate was fitted.

    Raises
    ------
    SpecError
        The spec's gate parameters are malformed.
    """
    state = _distribution_state(predictor)
    if state is None:
        return [GateCheck("distribution", True, "No out-of-distribution check is fitted for this model; "
                          "not checked.")]
    model, info = state
    per_layer = model.layer_scores(_model_features(predictor, model, pre.model_input[None]))[:, 0]  # (L,)
    score = float(per_layer.max())
    limit, q, domain = info["threshold"], info["quantile"], info["domain"]
    if not np.isfinite(score):
        return [GateCheck("distribution", False, "The out-of-distribution score could not be computed.", score)]
    if len(model.models) == 1:  # penultimate layer only: the score is a Mahalanobis distance
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
    what = ("low-level image statistics (texture, noise, contrast)" if worst == 0 else "high-level features"
            if worst == len(per_layer) - 1 else "mid-level features (local patterns)")
    return [GateCheck("distribution", False, f"This image looks unlike the {domain} the model was trained on: "
                      f"its {what} are {score / limit:.1f} times as far from the training images as the "
                      f"{_limit_text(q)} limit (score {score:.2f} vs {limit:.2f}; {_limit_text(q)} of validation "
                      "images are within the limit). The prediction may be meaningless.", round(score, 3))]


def _flag_rates(predictor: Predictor, model: LayeredDistribution, threshold: float,
                images: Any, batch_size: int = 64) -> dict[str, Any]:
    """Stream one reference set through preprocessing, :func:`check_image` and the distance."""
    from medimg.calibrate import Unreadable
    from medimg.preprocess import run as preprocess_run

    spec = predictor.spec
    xs: list[np.ndarray] = []
    other_fail: list[bool] = []
    unprocessable = 0
    unreadable: dict[str, int] = {}
    for img in images:
        if isinstance(img, Unreadable):
            unreadable[img.reason] = unreadable.get(img.reason, 0) + 1
            continue
        try:
            pre = preprocess_run(img, spec.preprocess)
        except MedimgError:
            unprocessable += 1
            continue
        other_fail.append(not all(c.passed for c in check_image(img, pre, spec)))
        xs.append(pre.model_input)
    n = len(xs)
    skipped = {"unprocessable": unprocessable, **({"unreadable": unreadable} if unreadable else {})}
    if n == 0:
        return {"n": 0, **skipped}
    dist = model.score(_model_features(predictor, model, np.stack(xs), batch_size))
    ood = dist > threshold
    return {"n": n, "ood_flag_rate": round(float(ood.mean()), 4),
            "gate_flag_rate": round(float((ood | np.asarray(other_fail)).mean()), 4),
            "median_distance": round(float(np.median(dist)), 2), "min_distance": round(float(dist.min()), 2),
            **skipped}


def fit_gate(spec_path: str | Path, quantile: float = 0.99, *, n_components: int = 64, device: str = "auto",
             limit: int | None = None, out_of_scope: bool = True, n_out_of_scope: int = 100,
             domain: str | None = None, batch_size: int = 64, stages: bool = True) -> ModelSpec:
    """Fit the out-of-distribution check of a trained model and write it into its spec.

    Per layer (:func:`layer_features`), training-split features give the class means and the shared shrunk
    covariance, and the layer's validation ``quantile`` its scale (:class:`medimg.calibrate.LayeredDistribution`);
    the limit on the combined score is the split-conformal ``quantile`` of the validation-split scores
    (:func:`medimg.calibrate.conformal_threshold`), so about ``quantile`` of in-distribution images pass; the
    test split measures the pass rate actually
    reached, and out-of-scope reference sets (:func:`medimg.calibrate.out_of_scope_sets`) the refusal rates.
    Rewriting the spec JSON leaves the weights file and its sha256 unchanged.

    Parameters
    ----------
    spec_path : path
        ``weights/<name>.json``; the weights are loaded sha256-checked.
    quantile : float in (0, 1)
        Target in-distribution pass rate on the validation split.
    n_components : int
        Principal directions of the shared covariance kept exactly (the rest share one variance).
    device : str
    limit : int, optional
        First N images per split (quick checks and tests).
    out_of_scope : bool
        Measure refusal rates on the out-of-scope sets (and the adult chest DICOMs, reported separately).
    n_out_of_scope : int
        Images per out-of-scope data set.
    domain : str, optional
        How reasons name the training images; from the training task by default.
    batch_size : int
    stages : bool
        True: the intermediate :data:`STAGE_LAYERS` and the penultimate layer (feature ensemble); False: the
        penultimate layer alone (the score is then its Mahalanobis distance).

    Returns
    -------
    ModelSpec
        The spec as written, with ``gate["distribution"]`` (statistics, threshold, quantile, domain) and
        ``gate["fit"]`` (pass rates, refusal rates, sizes, timing).
    """
    from medimg.calibrate import near_scope_sets, out_of_scope_sets
    from medimg.predict import Predictor
    from medimg.spec import load_spec, save_spec
    from medimg.train import load_task_split

    t0 = time.time()
    spec_path = Path(spec_path)
    predictor = Predictor.from_spec(spec_path, device=device)
    spec = predictor.spec
    task_key = spec.training.get("config", {}).get("task", "kermany-cxr")
    mean = np.asarray(spec.preprocess.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.preprocess.std, np.float32).reshape(1, -1, 1, 1)
    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        arrays = load_task_split(task_key, split, spec.preprocess, limit)
        x = ((arrays.x.numpy() - mean) / std).astype(np.float32)
        feats[split] = _features(predictor, x, stages=stages, batch_size=batch_size)
        labels[split] = arrays.y.numpy()
        log.info("fit-gate: %s features %s", split, [f.shape for f in feats[split]])
    names = (*STAGE_LAYERS[spec.architecture], FEATURE_LAYERS[spec.architecture]) if stages else (
        FEATURE_LAYERS.get(spec.architecture, "penultimate"),)
    if stages:
        model = LayeredDistribution.fit(names, feats["train"], labels["train"], feats["val"], quantile,
                                        n_components)
    else:
        single = DistributionModel.fit(feats["train"][0], labels["train"], n_components)
        model = LayeredDistribution.single(names[0], DistributionModel.from_dict(single.to_dict()))
    val_d, test_d = model.score(feats["val"]), model.score(feats["test"])
    threshold = conformal_threshold(val_d, quantile)
    test_pass = test_d <= threshold
    per_class = {spec.labels[c]: round(float(test_pass[labels["test"] == c].mean()), 4)
                 for c in np.unique(labels["test"])}
    test_layers = model.layer_scores(feats["test"])
    fit: dict[str, Any] = {
        "n": {s: len(f[0]) for s, f in feats.items()}, "val_pass_rate": round(float((val_d <= threshold).mean()), 4),
        "test_pass_rate": round(float(test_pass.mean()), 4), "test_pass_rate_per_class": per_class,
        **dict(zip(("test_pass_rate_expected", "test_pass_rate_lowest_plausible"),
                   (round(v, 4) for v in conformal_pass_rate_range(len(val_d), len(test_d), quantile)),
                   strict=True)),
        "test_pass_rate_per_layer": {n: round(float((v <= 1.0).mean()), 4)
                                     for n, v in zip(model.layers, test_layers, strict=True)} if stages else None,
        "train_median_distance": round(float(np.median(model.score(feats["train"]))), 2),
        "val_median_distance": round(float(np.median(val_d)), 2),
        "test_median_distance": round(float(np.median(test_d)), 2), "limit": None if limit is None else limit,
    }
    if out_of_scope:
        task = _task(task_key)
        exclude = task.oos_exclude if task is not None else ()
        fit["out_of_scope"] = {name: _flag_rates(predictor, model, threshold, images, batch_size)
                               for name, images in out_of_scope_sets(n=n_out_of_scope, exclude=exclude)}
        fit["near_scope"] = {name: _flag_rates(predictor, model, threshold, images, batch_size)
                             for name, images in near_scope_sets(task_key=task_key)}
    fit["seconds"] = round(time.time() - t0, 1)
    common = {"quantile": quantile, "threshold": threshold,
              "threshold_rule": "split-conformal quantile of validation-split scores",
              "domain": domain or _task_domain(task_key)}
    if stages:
        distribution = {
            "method": "multi-layer Mahalanobis (feature ensemble): per layer, class-conditional Gaussians on the "
                      "channel means with a shared Ledoit-Wolf covariance (top-k + isotropic rest); each layer's "
                      "distance divided by its validation quantile; score = the largest over layers",
            "references": ["Lee et al., NeurIPS 2018", "Ledoit & Wolf 2004", "Tipping & Bishop 1999"],
            "feature_dim": int(sum(m.feature_dim for m in model.models)), "n_components": n_components,
            **common, "layers": model.to_dict()}
    else:
        distribution = {
            "method": "mahalanobis: class-conditional Gaussians, shared Ledoit-Wolf covariance, top-k + isotropic "
                      "rest", "references": ["Lee et al., NeurIPS 2018", "Ledoit & Wolf 2004", "Tipping & Bishop 1999"],
            "layer": names[0], "feature_dim": model.models[0].feature_dim,
            "n_components": int(model.models[0].components.shape[1]), **common,
            "model": model.models[0].to_dict()}
    # re-read the spec so edits made while fitting are kept; refuse if the weights changed meanwhile
    current = load_spec(spec_path)
    if current.sha256 != spec.sha256 or current.architecture != spec.architecture:
        raise SpecError(f"The weights of {spec.name} changed while the gate was being fitted; run fit-gate again.")
    gate = dict(current.gate)
    gate.update(distribution=distribution, fit=fit)
    spec = current.replace(gate=gate)
    save_spec(spec, spec_path)
    if fit["test_pass_rate"] < fit["test_pass_rate_lowest_plausible"]:
        log.warning("fit-gate: only %.1f %% of in-distribution test images pass, below the %.1f %% that images like "
                    "the validation split would give at worst: the test split differs from validation",
                    100 * fit["test_pass_rate"], 100 * fit["test_pass_rate_lowest_plausible"])
    return spec
