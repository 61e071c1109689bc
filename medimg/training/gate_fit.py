"""Fitting the out-of-distribution gate (``medimg fit-gate``): the workshop half of :mod:`medimg.gate`.

Per layer of the architecture's feature taps, class-conditional Gaussians with a shared shrunk covariance are
fitted on the training split, scaled on the validation split, and the limit on the combined score is set by
split-conformal calibration; for chest tasks a logistic discriminator against the fit half of the adult chest
films adds one more scaled score; refusal rates are measured on out-of-scope reference sets
(:mod:`medimg.training.reference_sets`), the adult films on the report half, which was not fitted on. The result is written into the spec's ``gate`` dict, which serving
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
from medimg.gate import check_image, parse_distribution, pooled_features
from medimg.models import feature_extractor, get_architecture
from medimg.ood import DistributionModel, LayeredDistribution, conformal_pass_rate_range, conformal_threshold
from medimg.predict import Predictor
from medimg.preprocess import normalise_batch
from medimg.preprocess import run as preprocess_run
from medimg.spec import ModelSpec, load_spec, save_spec, spec_task
from medimg.training.reference_sets import (
    Unreadable,
    fit_reference_sets,
    near_scope_sets,
    out_of_scope_sets,
    report_reference_sets,
)
from medimg.training.tasks import get_task, load_task_split

__all__ = ["selective_accuracy", "training_image_sides", "fit_gate"]

log = logging.getLogger(__name__)


Scorer = Callable[[list[np.ndarray]], np.ndarray]


def _model_inputs(predictor: Predictor, images: Any) -> tuple[list[np.ndarray], list[bool], dict[str, Any]]:
    """Preprocess a streamed reference set: model inputs, whether a network-free check failed, what was skipped."""
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
    return xs, other_fail, {"unprocessable": unprocessable, **({"unreadable": unreadable} if unreadable else {})}


def _flag_rates(predictor: Predictor, features: Callable[[np.ndarray], list[np.ndarray]],
                model: LayeredDistribution, threshold: float, images: Any,
                compare: dict[str, Scorer] | None = None) -> dict[str, Any]:
    """Stream one reference set through preprocessing, :func:`check_image` and the score.

    ``compare`` maps a name to a function of the per-layer features giving other gates' refusals (bool): their
    rates are added as ``ood_flag_rate_<name>``.
    """
    xs, other_fail, skipped = _model_inputs(predictor, images)
    n = len(xs)
    if n == 0:
        return {"n": 0, **skipped}
    feats = features(np.stack(xs))
    dist = model.score(feats)
    ood = dist > threshold
    extra = {f"ood_flag_rate_{k}": round(float(np.mean(f(feats))), 4) for k, f in (compare or {}).items()}
    return {"n": n, "ood_flag_rate": round(float(ood.mean()), 4),
            "gate_flag_rate": round(float((ood | np.asarray(other_fail)).mean()), 4),
            "median_distance": round(float(np.median(dist)), 2), "min_distance": round(float(dist.min()), 2),
            **extra, **skipped}


def _previous_gate(spec: ModelSpec, names: tuple[str, ...]) -> tuple[Scorer, dict[str, Any]] | None:
    """The gate stored in the spec before this fit, as a refusal function of this fit's per-layer features."""
    try:
        parsed = parse_distribution(spec)
    except SpecError:
        return None
    if parsed is None:
        return None
    old, info = parsed
    if len(old.models) == 1 and old.discriminator is None:
        pick: Callable[[list[np.ndarray]], list[np.ndarray]] = lambda f: f[-1:]  # noqa: E731
    elif old.layers == names:
        pick = lambda f: f  # noqa: E731
    else:
        return None
    dims = [m.feature_dim for m in old.models]
    threshold = info["threshold"]

    def refused(feats: list[np.ndarray]) -> np.ndarray:
        f = pick(feats)
        if [x.shape[1] for x in f] != dims:
            return np.full(len(feats[0]), np.nan)
        return old.score(f) > threshold

    method = spec.gate["distribution"].get("method", "")
    return refused, {"method": method.split(":")[0], "threshold": threshold,
                     "reference": None if old.discriminator is None else old.discriminator.reference}


def training_image_sides(task_key: str) -> dict[str, int] | None:
    """Short sides of a task's training images as stored (before any resize), for the gate's size check.

    Parameters
    ----------
    task_key : str
        Key of :data:`medimg.training.tasks.TASKS` (a ``TASK::fold=K`` key reads its base task).

    Returns
    -------
    dict or None
        ``min``, ``p05`` and ``median`` short side in pixels over the training split (image headers only, no
        decode; MedMNIST: the release's side); None for a task whose images are not listed (``csv:`` tasks).
    """
    from PIL import Image

    from medimg.catalog import data_root, read_manifest
    from medimg.training.tasks import TASKS, split_fold_key

    task = TASKS.get(split_fold_key(task_key)[0])
    if task is None:
        return None
    if task.medmnist_flag:
        return {"min": 28, "p05": 28, "median": 28}
    folder = data_root() / task.folder
    sides = []
    for r in read_manifest(folder):
        if r["split"] == "train":
            with Image.open(folder / r["path"]) as im:  # reads the header only
                sides.append(min(im.size))
    if not sides:
        return None
    a = np.asarray(sides)
    return {"min": int(a.min()), "p05": int(np.percentile(a, 5)), "median": int(np.median(a))}


def selective_accuracy(spec_path: str | Path, device: str = "auto", limit: int | None = None) -> dict[str, Any]:
    """Accuracy on the test images the stored gate passes vs those it refuses (is a refusal where the model errs?).

    Parameters
    ----------
    spec_path : path
        Spec with a fitted gate; its test EvalReport (``<name>.eval.json``) supplies the per-image predictions.
    device : str
    limit : int, optional

    Returns
    -------
    dict
        ``n_passed``, ``n_refused``, ``accuracy_passed``, ``accuracy_refused`` (None when a group is empty).

    Notes
    -----
    Selective prediction (El-Yaniv & Wiener, JMLR 2010): a gate earns its refusals when accuracy on the images it
    passes is higher than on those it refuses, e.g. where the test split is shifted from the validation split.
    """
    from medimg.evaluate import EvalReport
    from medimg.gate import DistributionGate, parse_distribution
    from medimg.predict import Predictor
    from medimg.spec import spec_task

    pred = Predictor.from_spec(spec_path, device=device)
    spec = pred.spec
    rep = EvalReport.load(Path(spec_path).with_name(f"{spec.name}.eval.json"))
    arrays = load_task_split(spec_task(spec), "test", spec.preprocess, limit)
    if list(rep.ids[: len(arrays.ids)]) != list(arrays.ids):
        raise SpecError(f"The test report of {spec.name} does not list the test split's images in order.")
    gate = DistributionGate(spec, pred.model, pred.device)
    _, info = parse_distribution(spec)
    passed = gate.scores(normalise_batch(arrays.x.numpy(), spec.preprocess)) <= info["threshold"]
    return _selective(passed, np.asarray(rep.probs)[: len(passed)].argmax(1) == arrays.y.numpy())


def _selective(passed: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """Counts and accuracies of the passed and refused images ((N,) bool arrays)."""
    def acc(m: np.ndarray) -> float | None:
        return round(float(correct[m].mean()), 4) if m.any() else None

    return {"n_passed": int(passed.sum()), "n_refused": int((~passed).sum()), "accuracy_passed": acc(passed),
            "accuracy_refused": acc(~passed)}


def fit_gate(spec_path: str | Path, quantile: float = 0.99, *, n_components: int = 64, device: str = "auto",
             limit: int | None = None, out_of_scope: bool = True, n_out_of_scope: int = 100,
             domain: str | None = None, batch_size: int = 64, stages: bool = True, reference: bool = True,
             reference_seed: int = 0, reference_cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)) -> ModelSpec:
    """Fit the out-of-distribution check of a trained model and write it into its spec.

    Per layer (the architecture's feature taps (:func:`medimg.models.feature_extractor`)), training-split features give the class means and the shared shrunk
    covariance, and the layer's validation ``quantile`` its scale (:class:`medimg.ood.LayeredDistribution`);
    the limit on the combined score is the split-conformal ``quantile`` of the validation-split scores
    (:func:`medimg.ood.conformal_threshold`), so about ``quantile`` of in-distribution images pass; the
    test split measures the pass rate actually
    reached, and out-of-scope reference sets (:func:`medimg.training.reference_sets.out_of_scope_sets`) the refusal rates.
    For chest tasks, a logistic discriminator between the training split and the fit half of the adult chest
    films adds one more score, scaled by its validation quantile like the layers, so the conformal limit still
    holds for in-distribution images; its refusal rate is measured on the report half (other patients).
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
    reference : bool
        With ``stages``, fit a :class:`medimg.ood.ReferenceDiscriminator` against the task's near-domain reference
        set (:func:`medimg.training.reference_sets.fit_reference_sets`: the fit half of the adult chest films for
        the chest tasks; none for other tasks) and report its refusal rate on the report half.
    reference_seed : int
        Seed of the reference set's patient split.
    reference_cs : tuple of float
        Candidate inverse regularisation strengths of the discriminator, chosen by cross-validation with the
        one-standard-error rule; one value fixes it (smaller: smoother boundary, fewer in-distribution images of a
        drifted test split refused, fewer reference-like images refused).

    Returns
    -------
    ModelSpec
        The spec as written, with ``gate["distribution"]`` (statistics, threshold, quantile, domain) and
        ``gate["fit"]`` (pass rates, refusal rates, sizes, timing; ``reference``: the reference set, its sizes and
        the pass and refusal rates without the discriminator; ``previous_gate``: the gate stored before, measured
        on the same images).
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
    previous = _previous_gate(spec, names)
    ref_name, ref_feats, ref_info = None, None, {}
    if stages and reference:
        for name, images in fit_reference_sets(task_key, seed=reference_seed, limit=limit):
            xs, _, skipped = _model_inputs(predictor, images)
            if len(xs) >= 5:
                ref_name, ref_feats = name, features(np.stack(xs))
                ref_info = {"name": name, "seed": reference_seed, "n_fit": len(xs), **skipped}
                log.info("fit-gate: reference set %r, %d images", name, len(xs))
            break  # one reference set per task
    if stages:
        model = LayeredDistribution.fit(names, feats["train"], labels["train"], feats["val"], quantile,
                                        n_components, reference=ref_feats, reference_name=ref_name or "",
                                        reference_cs=reference_cs)
    else:
        single = DistributionModel.fit(feats["train"][0], labels["train"], n_components)
        model = LayeredDistribution.single(names[0], DistributionModel.from_dict(single.to_dict()))
    val_d, test_d = model.score(feats["val"]), model.score(feats["test"])
    threshold = conformal_threshold(val_d, quantile)
    test_pass = test_d <= threshold
    per_class = {spec.labels[c]: round(float(test_pass[labels["test"] == c].mean()), 4)
                 for c in np.unique(labels["test"])}
    test_layers = model.layer_scores(feats["test"])
    selective = None
    report_path = Path(spec_path).with_name(f"{spec.name}.eval.json")
    if report_path.exists():  # the test report's predictions, in the test split's order
        from medimg.evaluate import EvalReport

        rep = EvalReport.load(report_path)
        if len(rep.y_true) >= len(test_pass) and np.array_equal(np.asarray(rep.y_true)[: len(test_pass)],
                                                                 labels["test"]):
            selective = _selective(test_pass, np.asarray(rep.probs)[: len(test_pass)].argmax(1) == labels["test"])
    compare: dict[str, Scorer] = {}
    if model.discriminator is not None:
        base = model.without_discriminator()
        base_threshold = conformal_threshold(base.score(feats["val"]), quantile)
        compare["without_reference"] = lambda f: base.score(f) > base_threshold
        assert ref_feats is not None
        ref_info.update(
            scale=round(model.discriminator_scale, 6),
            fit_refusal_rate=round(float((model.score(ref_feats) > threshold).mean()), 4),
            fit_refusal_rate_without_reference=round(float((base.score(ref_feats) > base_threshold).mean()), 4),
            test_pass_rate_without_reference=round(float((base.score(feats["test"]) <= base_threshold).mean()), 4),
            val_pass_rate_without_reference=round(float((base.score(feats["val"]) <= base_threshold).mean()), 4))
    if previous is not None:
        compare["previous_gate"] = previous[0]
    fit: dict[str, Any] = {
        "n": {s: len(f[0]) for s, f in feats.items()}, "val_pass_rate": round(float((val_d <= threshold).mean()), 4),
        "test_pass_rate": round(float(test_pass.mean()), 4), "test_pass_rate_per_class": per_class,
        **({"test_selective_accuracy": selective} if selective is not None else {}),
        **dict(zip(("test_pass_rate_expected", "test_pass_rate_lowest_plausible"),
                   (round(v, 4) for v in conformal_pass_rate_range(len(val_d), len(test_d), quantile)),
                   strict=True)),
        "test_pass_rate_per_layer": {n: round(float((v <= 1.0).mean()), 4)
                                     for n, v in zip(model.score_names, test_layers, strict=True)} if stages else None,
        "train_median_distance": round(float(np.median(model.score(feats["train"]))), 2),
        "val_median_distance": round(float(np.median(val_d)), 2),
        "test_median_distance": round(float(np.median(test_d)), 2), "limit": None if limit is None else limit,
    }
    if ref_info:
        fit["reference"] = ref_info
    if previous is not None:
        fit["previous_gate"] = {**previous[1], "test_pass_rate": round(
            float(1.0 - np.mean(previous[0](feats["test"]))), 4)}
    if out_of_scope:
        exclude = get_task(task_key).oos_exclude
        fit["out_of_scope"] = {name: _flag_rates(predictor, features, model, threshold, images, compare)
                               for name, images in out_of_scope_sets(n=n_out_of_scope, exclude=exclude)}
        fit["near_scope"] = {name: _flag_rates(predictor, features, model, threshold, images, compare)
                             for name, images in near_scope_sets(task_key=task_key)}
        for kind, name, images in report_reference_sets(task_key, seed=reference_seed, limit=limit):
            fit[kind][name] = _flag_rates(predictor, features, model, threshold, images, compare)
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
        if model.discriminator is not None:
            distribution["method"] += ("; plus -log(1 - p) of a logistic discriminator between the training images and "
                                       f"{model.discriminator.reference} (the fit half of a patient split), "
                                       "divided by its validation quantile")
            distribution["references"].append("Hendrycks et al., ICLR 2019 (outlier exposure)")
            distribution["discriminator"] = model.discriminator_dict()
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
    sides = training_image_sides(spec.training.get("config", {}).get("task", ""))
    if sides:
        gate["training_image_sides"] = sides
    spec = current.replace(gate=gate)
    save_spec(spec, spec_path)
    if fit["test_pass_rate"] < fit["test_pass_rate_lowest_plausible"]:
        log.warning("fit-gate: only %.1f %% of in-distribution test images pass, below the %.1f %% that images like "
                    "the validation split would give at worst: the test split differs from validation",
                    100 * fit["test_pass_rate"], 100 * fit["test_pass_rate_lowest_plausible"])
    return spec
