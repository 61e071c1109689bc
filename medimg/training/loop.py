"""Training: weighted cross-entropy, AdamW with a cosine schedule, early stopping on validation AUROC,
temperature scaling on the validation split, resumable safetensors checkpoints, a JSON log per epoch; optionally
knowledge distillation from trained teachers (:mod:`medimg.training.distil`).

Mixed precision (bf16 autocast) and channels_last on CUDA, and on the CPU with ``bf16`` / ``channels_last``;
fixed seeds; deterministic on CPU. Under ``torchrun --nproc_per_node=N`` it runs DistributedDataParallel (NCCL on CUDA, gloo on CPU) over the same
global batches as one process (see :class:`medimg.training.data.GlobalBatchSampler`); rank 0 writes the outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save_file as st_save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from medimg.errors import SpecError
from medimg.evaluate import compute_metrics
from medimg.models import create_model, get_architecture, save_weights
from medimg.predict import batch_logits, choose_device, softmax
from medimg.spec import ModelSpec, PreprocessConfig
from medimg.training import data as mdata
from medimg.training import distil as mdistil
from medimg.training import grades as mgrades
from medimg.training import masks as mmasks
from medimg.training.calibration import calibrate_and_report
from medimg.training.config import TrainConfig
from medimg.training.gate_fit import fit_gate
from medimg.training.tasks import get_task, load_task_split, preprocess_config
from medimg.uncertainty import views_for_modality

__all__ = ["TrainConfig", "train"]

log = logging.getLogger(__name__)


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     best_state: dict[str, torch.Tensor] | None, meta: dict[str, Any],
                     ema: nn.Module | None = None, aux: nn.Module | None = None) -> None:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if aux is not None:
        tensors.update({f"aux.{k}": v.detach().cpu().contiguous() for k, v in aux.state_dict().items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    meta = dict(meta, param_groups=osd["param_groups"], scheduler=sched.state_dict())
    tmp = path.with_suffix(".tmp")
    st_save_file(tensors, str(tmp))
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, default=float) + "\n")


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     ema: nn.Module | None = None,
                     aux: nn.Module | None = None) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    tensors = st_load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if aux is not None:
        aux.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("aux.")}, strict=True)
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    sched.load_state_dict(meta["scheduler"])
    return best, meta


def _code_version() -> str:
    """The git commit of the code that trains: ``MEDIMG_CODE_COMMIT`` when set (a copy of the checkout without
    its git history, e.g. on a GPU host), else ``git rev-parse HEAD`` (``"unknown"`` outside a git checkout)."""
    import subprocess

    if os.environ.get("MEDIMG_CODE_COMMIT"):
        return os.environ["MEDIMG_CODE_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5,
                               check=False)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cam_grid(model: nn.Module, layer: str, pp: PreprocessConfig, device: torch.device) -> list[int]:
    """(rows, cols) of the CAM layer's output for one input of the spec's size: the heat map's grid."""
    from torchvision.models.feature_extraction import create_feature_extractor

    fx = create_feature_extractor(model, return_nodes={layer: "cam"}).eval()
    with torch.no_grad():
        out = fx(torch.zeros(1, pp.in_chans, *pp.input_size, device=device))["cam"]
    return [int(out.shape[-2]), int(out.shape[-1])]


def train(cfg: TrainConfig, argv: list[str] | None = None) -> ModelSpec:
    """Train, calibrate, evaluate on the test split and write weights, spec, EvalReport and log.

    Parameters
    ----------
    cfg : TrainConfig
    argv : list of str, optional
        The command line, recorded in the spec.

    Returns
    -------
    ModelSpec
        The written spec (with sha256 and test metrics).

    Notes
    -----
    Writes ``<out>/<stem>.safetensors``, ``.json`` (ModelSpec), ``.eval.json`` (test EvalReport),
    ``.log.json`` (per-epoch loss/metrics) and a resumable ``<stem>.ckpt.safetensors`` (removed at the end).
    Re-running the same command resumes from the checkpoint.
    """
    task = get_task(cfg.task)
    code_commit = _code_version()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
        device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    else:
        device = choose_device(cfg.device)
    main_process = rank == 0
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = cfg.stem
    default_mean = default_std = None  # the task's defaults (training.tasks.preprocess_config)
    if cfg.pretrained == "imagenet":  # the normalisation the ImageNet weights were trained with
        from medimg.models.pretrained import imagenet_normalisation

        default_mean, default_std = imagenet_normalisation(cfg.arch, task.in_chans)
    if cfg.freeze_epochs and distributed:
        raise SpecError("--freeze-epochs is not supported under torchrun (DDP needs a fixed set of trained "
                        "parameters); use --backbone-lr-scale instead")
    pp = preprocess_config(cfg.task, cfg.input_size, tuple(cfg.mean) if cfg.mean else default_mean,
                           tuple(cfg.std) if cfg.std else default_std)
    t0 = time.time()
    pack = None
    if cfg.data_pack:  # training on another machine from a pack of the preprocessed splits (see training.pack)
        from medimg.training.pack import pack_info, read_pack

        pack = pack_info(cfg.data_pack)
        if pack["task"] != cfg.task:
            raise SpecError(f"the data pack holds task {pack['task']!r}, not {cfg.task!r}")
        splits = {s: read_pack(cfg.data_pack, s, pp) for s in ("train", "val", "test")}
        if cfg.limit:
            splits = {s: mdata.SplitArrays(a.x[:cfg.limit], a.y[:cfg.limit], a.labels, a.ids[:cfg.limit])
                      for s, a in splits.items()}
    else:
        splits = {s: load_task_split(cfg.task, s, pp, cfg.limit) for s in ("train", "val", "test")}
    if cfg.mask_weight:
        if cfg.mask_weight < 0:
            raise SpecError(f"--mask-weight must be >= 0 (got {cfg.mask_weight})")
        if distributed:
            raise SpecError("--mask-weight is not supported under torchrun (its head is outside DDP)")
        if pack is not None or not task.folder:
            raise SpecError("--mask-weight needs the task's image folder with its lesion masks (not a data pack "
                            "or a MedMNIST array)")
        folder = mdata.data_root() / task.folder
        splits["train"] = replace(splits["train"], masks=mmasks.load_masks(folder, splits["train"].ids, pp))
        log.info("lesion masks: %d of %d training images have one", int((splits["train"].masks.amax((1, 2, 3)) > 0)
                 .sum()), len(splits["train"].y))
    labels = splits["train"].labels
    log.info("data loaded in %.1fs: %s", time.time() - t0, {s: len(a.y) for s, a in splits.items()})
    pos = labels.index(task.positive) if task.positive in labels and len(labels) == 2 else None

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in a single process
    net = create_model(cfg.arch, pp.in_chans, len(labels))
    initial, head = None, set()
    if cfg.pretrained:  # sha256-verified, strictly mapped; the head is re-initialised for this task's classes
        from medimg.models.pretrained import head_parameter_names, load_pretrained

        initial = load_pretrained(cfg.arch, net, cfg.pretrained)
        head = head_parameter_names(net)
    net = net.to(device)
    tap, aux = None, None
    if cfg.mask_weight:  # auxiliary lesion-mask head on the explained layer (training.masks); not shipped
        tap = mmasks.FeatureTap(net, get_architecture(cfg.arch).cam_layer)
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, pp.in_chans, *pp.input_size, device=device))
        net.train()
        aux = mmasks.MaskHead(int(tap.output.shape[1])).to(device)
        mask_grid = [int(v) for v in tap.output.shape[-2:]]
    channels_last = device.type == "cuda" or cfg.channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    teachers: list[mdistil.Teacher] = []
    if cfg.teachers:  # knowledge distillation (training.distil): the teachers see the student's augmented batch
        if not 0.0 <= cfg.distil_weight <= 1.0 or cfg.distil_temperature <= 0:
            raise SpecError(f"--distil-weight must lie in [0, 1] and --distil-temperature be > 0 (got "
                            f"{cfg.distil_weight}, {cfg.distil_temperature})")
        teachers = mdistil.load_teachers(cfg.teachers, pp, tuple(labels), device)
        if channels_last:
            for t in teachers:
                t.model.to(memory_format=torch.channels_last)
        log.info("distilling %d teachers (weight %.2f, temperature %.1f): %s", len(teachers), cfg.distil_weight,
                 cfg.distil_temperature, [t.spec.name for t in teachers])
    model: nn.Module = DDP(net, device_ids=[device.index] if device.type == "cuda" else None) if distributed else net
    counts = torch.bincount(splits["train"].y, minlength=len(labels)).float()
    if cfg.class_weighting and not cfg.balanced_sampling:  # balanced sampling already evens the classes out
        weight = counts.sum() / (len(labels) * counts.clamp(min=1))
    else:
        weight = torch.ones(len(labels))
    weight = weight.to(device)
    membership, grade_names = None, ()
    if cfg.grade_weight:  # grade-aware auxiliary loss (training.grades): Bethesda classes only
        if cfg.grade_weight < 0:
            raise SpecError(f"--grade-weight must be >= 0 (got {cfg.grade_weight})")
        try:
            membership, grade_names = mgrades.grade_membership(labels)
        except ValueError as e:
            raise SpecError(str(e)) from None
        membership = membership.to(device)
        log.info("grade-aware loss (weight %.2f) over the grades %s", cfg.grade_weight, grade_names)
    dataset = mdata.AugmentedDataset(splits["train"], pp, mdata.augmentation(task.modality, cfg.input_size), seed=cfg.seed)
    if len(dataset) < cfg.batch_size:
        raise SpecError(f"the training split has {len(dataset)} images, fewer than one batch of {cfg.batch_size}; "
                         "lower --batch-size or raise --limit")
    sampler = mdata.GlobalBatchSampler(len(dataset), cfg.batch_size, cfg.seed, rank, world,
                                       labels=splits["train"].y if cfg.balanced_sampling else None)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0 if device.type == "cpu" else 8,
                        persistent_workers=device.type != "cpu")
    if head:  # discriminative learning rates: backbone lr * backbone_lr_scale, the new head lr
        params: Any = [
            {"params": [p for n, p in net.named_parameters() if n not in head], "lr": cfg.lr * cfg.backbone_lr_scale},
            {"params": [p for n, p in net.named_parameters() if n in head], "lr": cfg.lr}]
    else:
        params = [{"params": list(net.parameters()), "lr": cfg.lr}]
    if aux is not None:
        params.append({"params": list(aux.parameters()), "lr": cfg.lr})
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = (AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay else None)
    evaluated: nn.Module = ema.module if ema is not None else net  # what is validated, selected and shipped
    steps_total = cfg.epochs * len(loader)
    warm = max(1, len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps_total) / steps_total)))

    ckpt = out / f"{stem}.ckpt.safetensors"
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_auroc, best_epoch, start_epoch, elapsed_before = -1.0, -1, 0, 0.0
    if ckpt.exists():
        best_state, meta = _load_checkpoint(ckpt, net, opt, sched, ema, aux)
        history, best_auroc, best_epoch = meta["history"], meta["best_auroc"], meta["best_epoch"]
        start_epoch, elapsed_before = meta["epoch"] + 1, meta.get("elapsed", 0.0)
        log.info("resumed from epoch %d (best val AUROC %.4f)", start_epoch, best_auroc)
    t_train = time.time()
    amp = device.type == "cuda" or cfg.bf16
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        if head and cfg.freeze_epochs:  # warm-up of the new head on a frozen backbone (BatchNorm stats still adapt)
            frozen = epoch < cfg.freeze_epochs
            for pname, p in net.named_parameters():
                p.requires_grad_(pname in head or not frozen)
        total, n = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr,
                   disable=None if main_process else True, mininterval=5.0)
        for batch in bar:
            xb, yb = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb).float()
                lesion = aux(tap.output) if aux is not None else None
            # weighted cross-entropy, normalised by the GLOBAL batch's weight sum so that N processes
            # (whose gradients DDP averages) optimise exactly the single-process loss
            per_sample = nn.functional.cross_entropy(logits, yb, weight=weight, reduction="none",
                                                     label_smoothing=cfg.label_smoothing)
            denom = weight[yb].sum().detach()
            if distributed:
                dist.all_reduce(denom)
            if membership is not None:  # the true grade's NLL, with the same class weights and normaliser
                per_sample = per_sample + cfg.grade_weight * weight[yb] * mgrades.grade_nll(logits, yb, membership)
            loss = per_sample.sum() / denom * world
            if teachers:
                soft = mdistil.teacher_probabilities(teachers, xb, cfg.distil_temperature, autocast=amp)
                kd = mdistil.distillation_loss(logits, soft, cfg.distil_temperature)
                count = torch.tensor(float(len(yb)), device=device)
                if distributed:
                    dist.all_reduce(count)
                loss = (1.0 - cfg.distil_weight) * loss + cfg.distil_weight * kd.sum() / count * world
            if lesion is not None:
                loss = loss + cfg.mask_weight * mmasks.mask_loss(lesion, batch[2].to(device)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(net)
            total += loss.item() / world  # this rank's share of the global batch's mean loss
            n += 1
            bar.set_postfix(loss=f"{total * world / n:.4f}")
        if distributed:
            t = torch.tensor([total], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            total = float(t.item())
        else:
            total = total * world
        model.eval()
        evaluated.eval()
        val_logits = batch_logits(evaluated, splits["val"].x, pp, device)
        vm = compute_metrics(splits["val"].y.numpy(), softmax(val_logits), pos)
        val_loss = float(nn.functional.cross_entropy(torch.from_numpy(val_logits), splits["val"].y).item())
        row = {"epoch": epoch + 1, "train_loss": total / max(n, 1e-12), "val_loss": val_loss,
               "val_accuracy": vm["accuracy"], "val_auroc": vm.get("auroc", float("nan")),
               "lr": sched.get_last_lr()[0], "seconds": time.time() - t_train + elapsed_before}
        history.append(row)
        # a tie in validation AUROC (small validation splits reach 1.0) goes to the lower validation loss
        best_loss = history[best_epoch - 1]["val_loss"] if best_epoch > 0 else math.inf
        improved = row["val_auroc"] > best_auroc or (row["val_auroc"] == best_auroc and val_loss < best_loss)
        if improved:
            best_auroc, best_epoch = row["val_auroc"], epoch + 1
            best_state = {k: v.detach().cpu().contiguous().clone() for k, v in evaluated.state_dict().items()}  # NCHW
        if main_process:
            log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.4f, val AUROC %.4f%s", epoch + 1,
                     row["train_loss"], val_loss, row["val_accuracy"], row["val_auroc"], " *" if improved else "")
            _save_checkpoint(ckpt, net, opt, sched, best_state,
                             {"epoch": epoch, "history": history, "best_auroc": best_auroc, "best_epoch": best_epoch,
                              "elapsed": time.time() - t_train + elapsed_before, "config": asdict(cfg)}, ema, aux)
            (out / f"{stem}.log.json").write_text(json.dumps({"config": asdict(cfg), "history": history}, indent=1))
        if epoch + 1 - best_epoch >= cfg.patience:
            log.info("early stop: no better validation AUROC for %d epochs", cfg.patience)
            break
    wall = time.time() - t_train + elapsed_before
    if tap is not None:
        tap.remove()
    if best_state is not None:
        net.load_state_dict(best_state)
    if cfg.half:  # evaluate exactly what is shipped: the float16-stored weights, loaded back as float32
        net.load_state_dict({k: (v.half().float() if v.is_floating_point() else v)
                             for k, v in net.state_dict().items()})
    net.eval()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
        if not main_process:
            return None  # type: ignore[return-value]
    data_ref = (f"medmnist:{task.medmnist_flag}" if task.medmnist_flag else task.csv if task.csv
                else f"shared/data/{task.folder}")
    data_sum = (pack["source_checksum"] if pack is not None
                else mdata.manifest_checksum(mdata.data_root() / task.folder) if task.folder
                else hashlib.sha256(Path(task.csv).read_bytes()).hexdigest() if task.csv
                else "medmnist md5 (package INFO)")
    distilled = (f", distilled from {len(teachers)} network{'s' if len(teachers) > 1 else ''}" if teachers else "")
    distilled += ", lesion-mask-guided" if aux is not None else ""
    distilled += ", grade-aware loss" if membership is not None else ""
    spec = ModelSpec(
        name=stem, title=(f"{task.title} ({cfg.arch}{', ImageNet-pretrained' if cfg.pretrained == 'imagenet' else ''}"
                          f"{distilled}"
                          f", {cfg.input_size} px)"), architecture=cfg.arch,
        labels=tuple(labels), preprocess=pp, intended_use=task.intended_use, modalities=task.modalities,
        body_parts=task.body_parts, positive_label=pos, temperature=1.0, threshold=None,
        cam_layer=get_architecture(cfg.arch).cam_layer,
        training={"command": "medimg " + " ".join(shlex.quote(a) for a in (argv or [])),
                  "data": data_ref, "data_checksum_sha256_manifest": data_sum, "seed": cfg.seed,
                  "epochs_run": len(history), "best_epoch": best_epoch, "best_val_auroc": best_auroc,
                  "wall_seconds": round(wall, 1), "device": str(device), "processes": world,
                  "torch": torch.__version__, "code_commit": code_commit, "config": asdict(cfg), "n": {s: len(a.y) for s, a in splits.items()},
                  "initial_weights": initial.as_dict() if initial is not None else None,
                  "teachers": [t.as_dict() for t in teachers] or None,
                  "mask_supervision": ({"layer": get_architecture(cfg.arch).cam_layer, "weight": cfg.mask_weight,
                                        "grid": mask_grid, "loss": "binary cross-entropy on the area-averaged mask"}
                                       if aux is not None else None),
                  "grade_supervision": ({"weight": cfg.grade_weight, "grades": list(grade_names),
                                         "loss": "negative log-likelihood of the true grade (summed class "
                                                 "probabilities), class-weighted like the cross-entropy"}
                                        if membership is not None else None),
                  "data_pack": ({k: pack[k] for k in ("sha256", "format", "quality")} if pack is not None else None),
                  "cam_grid": _cam_grid(net, get_architecture(cfg.arch).cam_layer, pp, device)},
        metrics={}, tta=views_for_modality(task.modality),
    )
    spec, report = calibrate_and_report(net, spec, splits["val"], splits["test"], device)
    summary = spec.metrics["test"]
    temperature = spec.temperature
    spec = save_weights(net, spec, out, half=cfg.half)
    report.save(out / f"{stem}.eval.json")
    for p in (ckpt, ckpt.with_suffix(".json")):
        p.unlink(missing_ok=True)
    if cfg.gate:
        spec = fit_gate(out / f"{stem}.json", device=str(device), limit=cfg.limit)
    log.info("wrote %s: test accuracy %.4f, AUROC %.4f, T=%.3f", stem, summary["accuracy"],
             summary.get("auroc", float("nan")), temperature)
    return spec
