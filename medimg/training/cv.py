"""Grouped k-fold cross-validation of a task whose manifest has a ``fold`` column (``head-ct``).

Fold ``K`` is the test split, fold ``K + 1`` the validation split (checkpoint selection, temperature), the other
folds train (:func:`medimg.training.tasks.fold_splits`); every fold keeps its groups (a scan's ``id_block10``) whole,
so no scan is ever in training and evaluation both. Each (fold, seed) run is an ordinary resumable ``train`` run
named ``<stem>_fold<K>_seed<S>``; a finished run (its ``.eval.json`` exists) is skipped, so re-running the same
command resumes. The summary ``<stem>.cv.json`` holds each run's test metrics, their mean +- SD over folds, and the
pooled out-of-fold metrics per seed (every image predicted once, by the model that never saw it).

Usage::

    uv run medimg cv --task head-ct --arch mobilenet_v2 --size 224 --pretrained imagenet \\
        --epochs 20 --batch-size 16 --out runs/cv --seeds 0 1 2      # any `medimg train` option
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medimg.training.config import TrainConfig

__all__ = ["run_cv", "summarise_cv", "recipe_of", "run_recipe", "RUN_ONLY_KEYS"]

log = logging.getLogger(__name__)

#: Metrics summarised over folds and seeds.
CV_KEYS = ("accuracy", "auroc", "sensitivity", "specificity", "macro_f1", "ece")

#: ``TrainConfig`` fields that differ between the runs of one cross-validation (or between it and a shipped run of
#: the same recipe) without changing the network: which fold, which seed, where it is written, how many threads,
#: whether the applicability gate was fitted afterwards.
RUN_ONLY_KEYS = ("task", "seed", "out", "name", "limit", "device", "num_threads", "gate")


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe part of a run's recorded ``training["config"]``: every field but :data:`RUN_ONLY_KEYS`.

    Two runs with equal recipes differ only in data fold, seed and bookkeeping, so a cross-validated estimate of
    one describes the other (:func:`medimg.ui.model_card.cv_estimate`). A :class:`TrainConfig` field that a run
    recorded before the field existed takes its default (every option was added off by default, so that is what
    the older run did); tuples compare as the lists JSON stores.
    """
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING and config}
    merged = {**defaults, **config}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(merged.items()) if k not in RUN_ONLY_KEYS}


def _stem(cfg: TrainConfig, fold: int, seed: int) -> str:
    base = cfg.name or TrainConfig(task=cfg.task, arch=cfg.arch, input_size=cfg.input_size).stem
    return f"{base}_fold{fold}_seed{seed}"


def run_cv(cfg: TrainConfig, seeds: list[int], folds: list[int] | None = None,
           argv: list[str] | None = None) -> dict[str, Any]:
    """Train every (fold, seed) run that is not finished, then :func:`summarise_cv`.

    Parameters
    ----------
    cfg : TrainConfig
        ``task`` is the base task (e.g. ``"head-ct"``); ``name`` (optional) the stem of every run and summary.
    seeds : list of int
    folds : list of int, optional
        All of the task's folds by default.
    argv : list of str, optional
        The command line, recorded in each spec.

    Returns
    -------
    dict
        The summary (also written to ``<out>/<stem>.cv.json``).

    Raises
    ------
    medimg.errors.SpecError
        The task has no folds.
    """
    from medimg.errors import SpecError
    from medimg.training.loop import train
    from medimg.training.tasks import get_task

    task = get_task(cfg.task)
    if not task.n_folds:
        raise SpecError(f"task {cfg.task!r} has no cross-validation folds")
    folds = list(range(task.n_folds)) if folds is None else folds
    out = Path(cfg.out)
    for seed in seeds:
        for k in folds:
            name = _stem(cfg, k, seed)
            if (out / f"{name}.eval.json").exists():
                log.info("skip %s (done)", name)
                continue
            log.info("start %s", name)
            train(replace(cfg, task=f"{cfg.task}::fold={k}", name=name, seed=seed), argv)
    return summarise_cv(out, cfg.name or TrainConfig(task=cfg.task, arch=cfg.arch, input_size=cfg.input_size).stem)


def run_recipe(spec_path: str | Path) -> dict[str, Any]:
    """What made a trained network, bar fold, seed and bookkeeping: :func:`recipe_of` its training config plus its
    preprocessing (``"preprocess"``: the spec's :class:`medimg.spec.PreprocessConfig` as JSON values, every field
    filled), so a change of window, ROI or input size between two runs shows as a different recipe.

    Parameters
    ----------
    spec_path : path
        A spec written by ``medimg train`` (``<name>.json``).

    Raises
    ------
    medimg.errors.SpecError
        The spec cannot be read.
    """
    import dataclasses

    from medimg.spec import load_spec

    spec = load_spec(spec_path)
    preprocess = json.loads(json.dumps(dataclasses.asdict(spec.preprocess)))
    return {**recipe_of((spec.training or {}).get("config", {})), "preprocess": preprocess}


def _mean_sd(values: list[float]) -> list[float | None]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return [None, None]
    return [round(float(np.mean(v)), 4), round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else None]


def summarise_cv(out: str | Path, stem: str) -> dict[str, Any]:
    """Summarise the finished ``<stem>_fold<K>_seed<S>`` runs in ``out`` and write ``<stem>.cv.json``.

    Returns
    -------
    dict
        ``runs`` ({run name: test metrics}), ``per_fold`` (mean +- SD over all runs, each run one fold's test
        split), ``pooled`` ({seed: metrics of the concatenated out-of-fold predictions}, only seeds with every
        fold finished), ``pooled_mean_sd`` (mean +- SD of the pooled metrics over those seeds), ``recipe``
        (:func:`run_recipe` of the runs when every run's spec is there and they agree, else None).
    """
    from medimg.evaluate import EvalReport, compute_metrics

    out = Path(out)
    runs: dict[str, dict[str, Any]] = {}
    by_seed: dict[str, list[EvalReport]] = {}
    recipes: list[dict[str, Any]] = []
    n_folds = 0
    for p in sorted(out.glob(f"{stem}_fold*_seed*.eval.json")):
        name = p.name[: -len(".eval.json")]
        fold, seed = name[len(stem) + 5 :].split("_seed")
        spec_path = p.with_name(f"{name}.json")
        if spec_path.exists():
            recipes.append(run_recipe(spec_path))
        rep = EvalReport.load(p)
        m = compute_metrics(rep.y_true, rep.probs, rep.positive_label, rep.threshold)
        runs[name] = {k: m.get(k) for k in CV_KEYS if m.get(k) is not None} | {"fold": int(fold), "n": m["n"]}
        by_seed.setdefault(seed, []).append(rep)
        n_folds = max(n_folds, int(fold) + 1)
    per_fold = {k: _mean_sd([r.get(k, float("nan")) for r in runs.values()]) for k in CV_KEYS}
    pooled: dict[str, dict[str, Any]] = {}
    for seed, reps in sorted(by_seed.items()):
        if len(reps) < n_folds:
            continue
        y = np.concatenate([np.asarray(r.y_true) for r in reps])
        probs = np.concatenate([np.asarray(r.probs) for r in reps])
        m = compute_metrics(y, probs, reps[0].positive_label, reps[0].threshold)
        pooled[seed] = {k: m.get(k) for k in CV_KEYS if m.get(k) is not None} | {"n": m["n"]}
    same = bool(recipes) and len(recipes) == len(runs) and all(r == recipes[0] for r in recipes)
    if recipes and not same:
        log.warning("the runs of %s do not share one recipe: none recorded", stem)
    summary = {"stem": stem, "folds": n_folds, "runs": runs, "per_fold": per_fold, "pooled": pooled,
               "pooled_mean_sd": {k: _mean_sd([p.get(k, float("nan")) for p in pooled.values()]) for k in CV_KEYS},
               "recipe": recipes[0] if same else None}
    (out / f"{stem}.cv.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
