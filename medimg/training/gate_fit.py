"""Fitting the out-of-distribution gate (``medimg fit-gate``): the workshop half of :mod:`medimg.gate`.

Per layer of the architecture's feature taps, class-conditional Gaussians with a shared shrunk covariance are
fitted on the training split, scaled on the validation split, and the limit on the combined score is set by
split-conformal calibration; refusal rates are measured on out-of-scope reference sets
(:mod:`medimg.training.reference_sets`). The result is written into the spec's ``gate`` dict, which serving
reads (:class:`medimg.gate.DistributionGate`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import MedimgError, SpecError
from medimg.gate import check_image, pooled_features
from medimg.models import feature_extractor, get_architecture
from medimg.ood import DistributionModel, LayeredDistribution, conformal_pass_rate_range, conformal_threshold
from medimg.predict import Predictor
from medimg.preprocess import normalise_batch
from medimg.preprocess import run as preprocess_run
from medimg.spec import ModelSpec, load_spec, save_spec, spec_task
from medimg.training.reference_sets import Unreadable, near_scope_sets, out_of_scope_sets
from medimg.training.tasks import get_task, load_task_split

__all__ = ["fit_gate"]

log = logging.getLogger(__name__)


def _flag_rates(predictor: Predictor, features: Callable[[np.ndarray], list[np.ndarray]],
                model: LayeredDistribution, threshold: float, images: Any) -> dict[str, Any]:
    """Stream one reference set through preprocessing, :func:`check_image` and the distance."""
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
    dist = model.score(features(np.stack(xs)))
    ood = dist > threshold
    return {"n": n, "ood_flag_rate": round(float(ood.mean()), 4),
            "gate_flag_rate": round(float((ood | np.asarray(other_fail)).mean()), 4),
            "median_distance": round(float(np.median(dist)), 2), "min_distance": round(float(dist.min()), 2),
            **skipped}


def fit_gate(spec_path: str | Path, quantile: float = 0.99, *, n_components: int = 64, device: str = "auto",
             limit: int | None = None, out_of_scope: bool = True, n_out_of_scope: int = 100,
             domain: str | None = None, batch_size: int = 64, stages: bool = True) -> ModelSpec:
    """Fit the out-of-distribution check of a trained model and write it into its spec.

    Per layer (the architecture's feature taps (:func:`medimg.models.feature_extractor`)), training-split features give the class means and the shared shrunk
    covariance, and the layer's validation ``quantile`` its scale (:class:`medimg.ood.LayeredDistribution`);
    the limit on the combined score is the split-conformal ``quantile`` of the validation-split scores
    (:func:`medimg.ood.conformal_threshold`), so about ``quantile`` of in-distribution images pass; the
    test split measures the pass rate actually
    reached, and out-of-scope reference sets (:func:`medimg.training.reference_sets.out_of_scope_sets`) the refusal rates.
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
        True: the intermediate ``stage_layers`` of the architecture and the penultimate layer (feature ensemble); False: the
        penultimate layer alone (the score is then its Mahalanobis distance).

    Returns
    -------
    ModelSpec
        The spec as written, with ``gate["distribution"]`` (statistics, threshold, quantile, domain) and
        ``gate["fit"]`` (pass rates, refusal rates, sizes, timing).
    """
    t0 = time.time()
    spec_path = Path(spec_path)
    predictor = Predictor.from_spec(spec_path, device=device)
    spec = predictor.spec
    task_key = spec_task(spec)
    arch = get_architecture(spec.architecture)
    extractor = feature_extractor(predictor.model, spec.architecture, stages=stages)
    stage_names = arch.stage_layers if stages else ()

    def features(x: np.ndarray) -> list[np.ndarray]:
        return pooled_features(extractor, stage_names, x, predictor.device, batch_size)

    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        arrays = load_task_split(task_key, split, spec.preprocess, limit)
        feats[split] = features(normalise_batch(arrays.x.numpy(), spec.preprocess))
        labels[split] = arrays.y.numpy()
        log.info("fit-gate: %s features %s", split, [f.shape for f in feats[split]])
    names = (*arch.stage_layers, arch.penultimate_description) if stages else (arch.penultimate_description,)
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
        exclude = get_task(task_key).oos_exclude
        fit["out_of_scope"] = {name: _flag_rates(predictor, features, model, threshold, images)
                               for name, images in out_of_scope_sets(n=n_out_of_scope, exclude=exclude)}
        fit["near_scope"] = {name: _flag_rates(predictor, features, model, threshold, images)
                             for name, images in near_scope_sets(task_key=task_key)}
    fit["seconds"] = round(time.time() - t0, 1)
    common = {"quantile": quantile, "threshold": threshold,
              "threshold_rule": "split-conformal quantile of validation-split scores",
              "domain": domain or get_task(task_key).domain}
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
