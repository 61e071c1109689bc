"""The model card a reviewer reads before trusting a model: how the shipped network was made, from its spec.

One row per question a reviewer asks (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019, sections
"Model details", "Training data", "Evaluation data"): what network, which initial weights (ImageNet or none; name
and sha256), what the network sees (the preprocessing contract), which data and split sizes, how long and how it
was trained (seed, epochs, the epoch kept, its validation AUROC, the loss), the exact command, how the
probabilities were calibrated, what Grad-CAM reads, and which weights file this is (sha256). Everything comes from
the spec JSON that ships beside the weights; nothing here reads patient data.

Where the spec records other seeds of the same recipe (``metrics["recipe_seeds"]``, written by
``bench/record_seeds.py``), the card also says how this network's test result sits among them: a reviewer can
then see whether the shipped seed is typical of its recipe or its luckiest run (Bouthillier et al., "Accounting
for variance in machine learning benchmarks", MLSys 2021).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from medimg.spec import ModelSpec

__all__ = ["model_card_rows", "seed_spread", "cv_estimate"]


def _short(digest: Any, n: int = 12) -> str:
    return f"{digest[:n]}…" if isinstance(digest, str) and len(digest) > n else str(digest or "")


def _loss(tr: dict[str, Any]) -> str:
    cfg = tr.get("config") or {}
    if cfg.get("balanced_sampling"):
        parts = ["cross-entropy, class-balanced sampling"]
    elif cfg.get("class_weighting", True):
        parts = ["cross-entropy weighted by inverse class frequency"]
    else:
        parts = ["cross-entropy"]
    if cfg.get("label_smoothing"):
        parts.append(f"label smoothing {cfg['label_smoothing']}")
    grade = tr.get("grade_supervision")
    if grade:
        parts.append(f"+ {grade['weight']} x the true Bethesda grade's negative log-likelihood")
    mask = tr.get("mask_supervision")
    if mask:
        parts.append(f"+ {mask['weight']} x lesion-mask loss on {mask['layer']} (auxiliary head not shipped)")
    teachers = tr.get("teachers")
    if teachers:
        parts.append(f"distilled from {len(teachers)} network{'s' if len(teachers) > 1 else ''} "
                     f"(weight {cfg.get('distil_weight')}, temperature {cfg.get('distil_temperature')})")
    return "; ".join(parts)


def _schedule(tr: dict[str, Any]) -> str:
    cfg = tr.get("config") or {}
    bits = [f"AdamW, learning rate {cfg['lr']:g}" if "lr" in cfg else "AdamW"]
    if cfg.get("pretrained") and cfg.get("backbone_lr_scale", 1.0) != 1.0:
        bits.append(f"backbone at {cfg['backbone_lr_scale']:g} x")
    if cfg.get("freeze_epochs"):
        bits.append(f"first {cfg['freeze_epochs']} epoch{'s' if cfg['freeze_epochs'] > 1 else ''} head only")
    if cfg.get("batch_size"):
        bits.append(f"batch {cfg['batch_size']}")
    if cfg.get("ema_decay"):
        bits.append(f"weight EMA {cfg['ema_decay']:g}")
    return ", ".join(bits)


def seed_spread(recipe_seeds: Any, own_seed: Any = None) -> str | None:
    """How one network's test result sits among the seeds of its recipe, in words (None when not recorded).

    Parameters
    ----------
    recipe_seeds : dict or None
        ``spec.metrics["recipe_seeds"]``: ``{"split": "test", "seeds": {"<seed>": {"accuracy": float,
        "auroc": float, ...}}, "source": str}`` with accuracy and AUROC in [0, 1], one entry per training run of
        the same command with another ``--seed``.
    own_seed : int or str, optional
        The seed of the network the card describes (``spec.training["seed"]``); it must be among the recorded
        seeds to be named.

    Returns
    -------
    str or None
        E.g. ``"test accuracy 0.880 ± 0.021 (0.865-0.904), AUROC 0.969 ± 0.005 (0.964-0.974) over seeds 0, 1, 2
        (mean ± sample SD); this network, seed 1: 0.904 / 0.974, the highest accuracy of the 3"``. None for fewer
        than two usable seeds or a malformed record (the card then leaves the row out rather than guess).
    """
    if not isinstance(recipe_seeds, dict) or not isinstance(recipe_seeds.get("seeds"), dict):
        return None
    runs: dict[str, tuple[float, float]] = {}
    for seed, m in recipe_seeds["seeds"].items():
        acc, auc = (m.get("accuracy"), m.get("auroc")) if isinstance(m, dict) else (None, None)
        if isinstance(acc, int | float) and isinstance(auc, int | float) and math.isfinite(acc) and math.isfinite(auc):
            runs[str(seed)] = (float(acc), float(auc))
    if len(runs) < 2:
        return None

    def stat(i: int) -> str:
        v = [r[i] for r in runs.values()]
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} ({min(v):.3f}-{max(v):.3f})"

    text = (f"{recipe_seeds.get('split', 'test')} accuracy {stat(0)}, AUROC {stat(1)} over seeds {', '.join(runs)} "
            "(mean ± sample SD)")  # seeds in the order recorded (bench/record_seeds.py writes them sorted)
    own = str(own_seed) if own_seed is not None else None
    if own in runs:
        acc, auc = runs[own]
        rank = sum(r[0] > acc for r in runs.values())
        where = ("the highest accuracy" if rank == 0 else "the lowest accuracy" if rank == len(runs) - 1
                 else f"accuracy rank {rank + 1}")
        ties = sum(r[0] == acc for r in runs.values()) - 1
        text += f"; this network, seed {own}: {acc:.3f} / {auc:.3f}, {where} of the {len(runs)}"
        text += f" (tied with {ties} other{'s' if ties > 1 else ''})" if ties else ""
    return text


def cv_estimate(recipe_cv: Any) -> str | None:
    """A recipe's cross-validated skill, in words, for the model card (None when not recorded).

    A test split of a few hundred images (BreastMNIST: 156) or a validation split of 78 measures one network
    coarsely; k-fold cross-validation of the same recipe predicts every training and validation image once,
    with a network that never saw it, and so estimates what the recipe does on new images of the same source.

    Parameters
    ----------
    recipe_cv : dict or None
        ``spec.metrics["recipe_cv"]`` as written by ``bench/record_cv.py``: ``{"folds": int, "kind": "grouped" |
        "stratified", "over": str (which images were dealt into folds), "per_fold": {"accuracy": [mean, sd],
        "auroc": [mean, sd]}, "pooled": {"<seed>": {"accuracy": float, "auroc": float, "n": int}}, ...}``;
        accuracy and AUROC in [0, 1], SD the sample SD over every (fold, seed) run (None for one run).

    Returns
    -------
    str or None
        E.g. ``"5-fold stratified cross-validation of this recipe over the 624 official training + validation
        images (the test split in no fold): out-of-fold accuracy 0.853, AUROC 0.905 (seed 0); per fold
        accuracy 0.853 ± 0.031, AUROC 0.904 ± 0.027 (mean ± sample SD over 5 runs)"``. None for a malformed or
        empty record (the card then leaves the row out rather than guess).
    """
    if not isinstance(recipe_cv, dict) or not isinstance(recipe_cv.get("pooled"), dict):
        return None
    pooled = {str(s): m for s, m in recipe_cv["pooled"].items() if isinstance(m, dict)
              and all(isinstance(m.get(k), int | float) and math.isfinite(m[k]) for k in ("accuracy", "auroc"))}
    per_fold = recipe_cv.get("per_fold") or {}
    if not pooled or not isinstance(recipe_cv.get("folds"), int):
        return None
    n = {m.get("n") for m in pooled.values()}
    images = f"the {n.pop():,} " if len(n) == 1 and None not in n else "the "
    text = (f"{recipe_cv['folds']}-fold {recipe_cv.get('kind', '')} cross-validation of this recipe over "
            f"{images}{recipe_cv.get('over', 'images')}: out-of-fold ").replace("  ", " ")
    acc, auc = ([m[k] for m in pooled.values()] for k in ("accuracy", "auroc"))
    if len(pooled) == 1:
        text += f"accuracy {acc[0]:.3f}, AUROC {auc[0]:.3f} (seed {next(iter(pooled))})"
    else:
        text += (f"accuracy {statistics.mean(acc):.3f} ± {statistics.stdev(acc):.3f}, AUROC "
                 f"{statistics.mean(auc):.3f} ± {statistics.stdev(auc):.3f} over seeds {', '.join(pooled)}")
    pf = {k: per_fold.get(k) for k in ("accuracy", "auroc")}
    if all(isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[0], int | float)
           and isinstance(v[1], int | float) for v in pf.values()):
        runs = recipe_cv["folds"] * len(pooled)
        text += (f"; per fold accuracy {pf['accuracy'][0]:.3f} ± {pf['accuracy'][1]:.3f}, AUROC "
                 f"{pf['auroc'][0]:.3f} ± {pf['auroc'][1]:.3f} (mean ± sample SD over {runs} runs)")
    return text


def model_card_rows(spec: ModelSpec) -> dict[str, list[str]]:
    """The model card of one shipped model, as a two-column table.

    Parameters
    ----------
    spec : ModelSpec
        The model's spec (:mod:`medimg.spec`); its ``training`` dict is what ``medimg train`` recorded
        (missing entries are left out, so hand-made or older specs still get a card).

    Returns
    -------
    dict with keys ``"Item"`` and ``"Value"``
        Equal-length lists of str, in reading order; ready for ``st.table`` or an HTML table. Digests are shown
        as their first 12 hex digits.
    """
    tr = spec.training or {}
    pp = spec.preprocess
    rows: list[tuple[str, str]] = [("Architecture", spec.architecture),
                                   ("Classes", ", ".join(spec.labels))]
    if "initial_weights" in tr:  # recorded by medimg train: None means a random start
        init = tr["initial_weights"]
        if init:
            adapted = f"; first convolution: {init['adapted_first_conv']}" if init.get("adapted_first_conv") else ""
            rows.append(("Initial weights", f"{init.get('name', '?')} (sha256 {_short(init.get('sha256'))}, "
                                            f"{init.get('source', 'local file')}){adapted}"))
        else:
            rows.append(("Initial weights", "random (trained from scratch)"))
    chans = "grey" if pp.in_chans == 1 else f"{pp.in_chans} channels"
    rows.append(("Network input", f"{pp.input_size[0]} x {pp.input_size[1]} px, {chans}; window {pp.window}, "
                                  f"ROI {pp.roi}, geometry {pp.geometry}, intensity {pp.intensity}"))
    rows.append(("Normalisation", f"(x − {list(pp.mean)}) / {list(pp.std)} on the [0, 1] image"))
    if tr.get("data"):
        checksum = tr.get("data_checksum_sha256_manifest")  # a hex digest, or a note such as "medmnist md5 (...)"
        note = "" if not checksum else f" ({checksum})" if " " in checksum else f" (manifest sha256 {_short(checksum)})"
        rows.append(("Training data", f"{tr['data']}{note}"))
    pack = tr.get("data_pack")
    if pack:
        fmt = {"webp": "WebP"}.get(pack.get("format"), pack.get("format", "?"))
        rows.append(("Data pack", f"trained from a {fmt} data pack of these images (sha256 {_short(pack.get('sha256'))}, "
                                  f"quality {pack.get('quality', '?')})"))
    n = tr.get("n")
    if isinstance(n, dict) and n:
        rows.append(("Split sizes (images)", ", ".join(f"{k} {v:,}" for k, v in n.items())))
    if tr.get("config"):
        rows.append(("Loss", _loss(tr)))
        rows.append(("Optimiser", _schedule(tr)))
    if "epochs_run" in tr:
        kept = f"; weights of epoch {tr['best_epoch']}" if tr.get("best_epoch") else ""
        auroc = (f" (validation AUROC {tr['best_val_auroc']:.4f})"
                 if isinstance(tr.get("best_val_auroc"), int | float) else "")
        rows.append(("Epochs", f"{tr['epochs_run']} run{kept}{auroc}; seed {tr.get('seed', '?')}"))
    spread = seed_spread((spec.metrics or {}).get("recipe_seeds"), tr.get("seed"))
    if spread:
        rows.append(("Same recipe, other seeds", spread))
    cv = cv_estimate((spec.metrics or {}).get("recipe_cv"))
    if cv:
        rows.append(("Same recipe, cross-validated", cv))
    if tr.get("wall_seconds") is not None:
        procs = tr.get("processes") or 1
        rows.append(("Training time", f"{tr['wall_seconds'] / 60:.1f} min on {tr.get('device', '?')}"
                                      + (f" x {procs} processes" if procs > 1 else "")
                                      + (f", torch {tr['torch']}" if tr.get("torch") else "")))
    if tr.get("command"):
        rows.append(("Command", tr["command"]))
    if tr.get("finalised_on"):
        rows.append(("Finalised on", tr["finalised_on"]))
    rows.append(("Calibration", f"temperature {spec.temperature:.3f} fitted on the validation split"
                                if abs(spec.temperature - 1.0) > 1e-9 else
                                "temperature 1 (probabilities not rescaled)"))
    grid = tr.get("cam_grid")
    rows.append(("Grad-CAM layer", spec.cam_layer + (f" ({grid[0]} x {grid[1]} grid)" if grid else "")))
    if spec.gate:
        rows.append(("Applicability gate", "fitted on the validation split (refuses images unlike the training "
                                           "data)"))
    if spec.sha256:
        rows.append(("Weights file", f"{spec.name}.safetensors (sha256 {_short(spec.sha256)})"))
    if tr.get("code_commit"):
        rows.append(("Code", f"medimg commit {_short(tr['code_commit'], 10)}"))
    return {"Item": [r[0] for r in rows], "Value": [r[1] for r in rows]}
