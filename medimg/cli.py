"""``medimg`` command line: train | cv | pack | finalise | evaluate | fit-gate | predict | explain | inside.

Training options and their defaults come from :class:`medimg.training.config.TrainConfig` (one place).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from medimg.training.config import TrainConfig

__all__ = ["main"]


def _train_config(args: argparse.Namespace, gate: bool | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``train`` options (every field's default comes from TrainConfig)."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values.update(class_weighting=not args.no_class_weights, half=not args.fp32,
                  gate=(not args.no_gate) if gate is None else gate,
                  ema_decay=None if args.ema_decay is None or args.ema_decay <= 0 else args.ema_decay,
                  teachers=tuple(args.teachers or ()))
    return TrainConfig(**values)


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.training.loop import train

    spec = train(_train_config(args), argv)
    if spec is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    print(json.dumps({"name": spec.name, "test": spec.metrics.get("test", {})}, indent=1, default=str))
    return 0


def _cv(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.training.cv import run_cv

    summary = run_cv(_train_config(args, gate=False), args.seeds, args.folds, argv)
    print(json.dumps({"per_fold": summary["per_fold"], "pooled_mean_sd": summary["pooled_mean_sd"]}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.training.evaluation import evaluate_split

    report = evaluate_split(args.model, split=args.split, device=args.device)
    if args.out:
        report.save(args.out)
    m = {k: v for k, v in report.metrics.items() if k != "ci95"}
    print(json.dumps(m, indent=1))
    return 0


def _pack(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.training.pack import write_pack
    from medimg.training.tasks import preprocess_config

    pp = preprocess_config(args.task, args.input_size)  # a pack holds [0, 1] images: mean/std are not applied
    meta = write_pack(args.task, pp, args.out, fmt=args.format, quality=args.quality, limit=args.limit)
    print(json.dumps({k: meta[k] for k in ("task", "input_size", "in_chans", "format", "quality", "n")}))
    return 0


def _finalise(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.training.pack import finalise

    for m in args.model:
        spec = finalise(m, device=args.device, limit=args.limit)
        print(json.dumps({"name": spec.name, "temperature": spec.temperature, "test": spec.metrics["test"]},
                         default=str))
    return 0


def _predict(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.io import load_image
    from medimg.predict import Predictor

    pred = Predictor.from_spec(args.model, device=args.device)
    rows = []
    for f in args.files:
        r = pred.predict(load_image(Path(f)))
        rows.append({"file": f, "label": r.label, "probabilities": r.probabilities, "gate": r.gate.as_dict(),
                     "device": r.device})
    print(json.dumps(rows, indent=1))
    return 0


def _explain(args: argparse.Namespace, argv: list[str]) -> int:
    import numpy as np
    from PIL import Image

    from medimg.explain import cam, overlay
    from medimg.io import load_image
    from medimg.predict import Predictor

    pred = Predictor.from_spec(args.model, device=args.device)
    img = load_image(Path(args.file))
    r = pred.predict(img)
    result = cam(pred, r.preprocessed, target=None, method=args.method)
    rgb = overlay(img.display(), result.heatmap_original(img.shape[:2]), alpha=args.alpha)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(args.out)
    print(json.dumps({"file": args.file, "label": r.label, "probabilities": r.probabilities, "out": args.out,
                      "method": result.method, "target": result.target_label, "layer": result.layer,
                      "scale": result.scale, "note": "heat map min-max scaled per image (relative)"}))
    return 0


def _inside(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.explain.teaching import slide_images
    from medimg.io import load_image
    from medimg.predict import Predictor

    pred = Predictor.from_spec(args.model, device=args.device)
    img = load_image(Path(args.file))
    files = slide_images(pred, img, method=args.method, channels=args.channels,
                         layers=[s for s in args.layers.split(",") if s] if args.layers else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    print(json.dumps({"file": args.file, "out": str(out), "method": args.method, "files": sorted(files),
                      "note": "heat maps min-max scaled per map (relative); feature maps per channel"}, indent=1))
    return 0


def _fit_gate(args: argparse.Namespace, argv: list[str]) -> int:
    from medimg.training.gate_fit import fit_gate

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    spec = fit_gate(args.model, quantile=args.quantile, n_components=args.components, device=args.device,
                    limit=args.limit, out_of_scope=not args.no_out_of_scope, stages=not args.penultimate_only)
    d = spec.gate["distribution"]
    print(json.dumps({"name": spec.name, "threshold": d["threshold"], "quantile": d["quantile"], **spec.gate["fit"]},
                     indent=1))
    return 0


def _add_train_options(t: argparse.ArgumentParser) -> None:
    """The ``train`` options, their defaults read from :class:`TrainConfig`."""
    d = TrainConfig()
    t.add_argument("--task", default=d.task,
                   help="kermany-cxr, busi, brain-mri, pbc-blood, pneumoniamnist, breastmnist, head-ct, cric-cervix "
                   "(TASK::fold=K: grouped cross-validation fold K), or csv:LABELS.csv"
                   "[::patient=COL][::modality=M][::channels=3] for a labelled image or DICOM folder")
    t.add_argument("--arch", default=d.arch)
    t.add_argument("--size", dest="input_size", type=int, default=d.input_size, help="input side in pixels")
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--patience", type=int, default=d.patience)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    t.add_argument("--no-class-weights", action="store_true", default=not d.class_weighting)
    t.add_argument("--balanced-sampling", action="store_true", default=d.balanced_sampling,
                   help="class-balanced sampling with replacement (small classes seen as often as large ones); "
                   "the loss is then unweighted")
    t.add_argument("--out", default=d.out)
    t.add_argument("--name", default=d.name)
    t.add_argument("--limit", type=int, default=d.limit, help="first N images per split (quick check)")
    t.add_argument("--device", default=d.device)
    t.add_argument("--threads", dest="num_threads", type=int, default=d.num_threads)
    t.add_argument("--ema-decay", type=float, default=d.ema_decay, help="weight EMA decay per step (0 = off)")
    t.add_argument("--fp32", action="store_true", default=not d.half,
                   help="store float32 weights (default: float16 storage)")
    t.add_argument("--no-gate", action="store_true", default=not d.gate,
                   help="do not fit the out-of-distribution gate afterwards")
    t.add_argument("--pretrained", default=d.pretrained,
                   help="initial weights: 'imagenet' (sha256-verified ImageNet-1k release; mobilenet_v2) or a "
                   ".safetensors file with the architecture's keys (default: random initialisation)")
    t.add_argument("--freeze-epochs", type=int, default=d.freeze_epochs,
                   help="with --pretrained: train only the new head for this many epochs first")
    t.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale,
                   help="with --pretrained: backbone learning rate = lr x this (the head keeps lr)")
    t.add_argument("--channels-last", action="store_true", default=d.channels_last,
                   help="NHWC memory format on the CPU too (always on with CUDA)")
    t.add_argument("--bf16", action="store_true", default=d.bf16,
                   help="bfloat16 autocast in training on the CPU too (always on with CUDA)")
    t.add_argument("--teacher", dest="teachers", nargs="+", default=list(d.teachers), metavar="SPEC.json",
                   help="distil these trained networks (the mean of their calibrated probabilities) into the "
                   "new one (Hinton et al. 2015); they must share its labels and preprocessing")
    t.add_argument("--distil-weight", type=float, default=d.distil_weight,
                   help="with --teacher: weight in [0, 1] of the distillation term (the labels' cross-entropy "
                   "gets 1 - this)")
    t.add_argument("--distil-temperature", type=float, default=d.distil_temperature,
                   help="with --teacher: softening temperature of teachers and student")
    t.add_argument("--mask-weight", type=float, default=d.mask_weight,
                   help="weight of the lesion-mask auxiliary loss on the explained layer (tasks with expert "
                   "masks, e.g. busi; the auxiliary head is not shipped); 0 turns it off")
    t.add_argument("--grade-weight", type=float, default=d.grade_weight,
                   help="weight of the grade-aware loss (Bethesda classes, e.g. cric-cervix): the true grade's "
                   "negative log-likelihood is added to the cross-entropy; 0 turns it off")
    t.add_argument("--data-pack", default=d.data_pack,
                   help="train from a data pack (medimg pack) instead of the data folder; then medimg finalise")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs)."""
    p = argparse.ArgumentParser(prog="medimg", description="Train, evaluate and run medical image CNNs.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model and write weights + spec + test report")
    _add_train_options(t)
    t.set_defaults(fn=_train)
    c = sub.add_parser("cv", help="grouped k-fold cross-validation of a task (TASK::fold=K), seeds x folds; "
                       "resumable; writes <stem>.cv.json")
    _add_train_options(c)
    c.add_argument("--seeds", type=int, nargs="+", default=[0])
    c.add_argument("--folds", type=int, nargs="+", default=None, help="folds to run (default: all)")
    c.set_defaults(fn=_cv)
    e = sub.add_parser("evaluate", help="evaluate a model on a split and print metrics")
    e.add_argument("--model", required=True, help="path of the spec JSON")
    e.add_argument("--split", default="test")
    e.add_argument("--out", default=None, help="write the EvalReport JSON here")
    e.add_argument("--device", default="auto")
    e.set_defaults(fn=_evaluate)
    pk = sub.add_parser("pack", help="write a task's preprocessed splits to one file (to train on another machine)")
    pk.add_argument("--task", required=True)
    pk.add_argument("--size", dest="input_size", type=int, required=True, help="input side in pixels")
    pk.add_argument("--format", choices=("jpeg", "webp", "png"), default="webp")
    pk.add_argument("--quality", type=int, default=90, help="JPEG/WebP quality")
    pk.add_argument("--limit", type=int, default=None)
    pk.add_argument("--out", required=True, help="output .npz")
    pk.set_defaults(fn=_pack)
    fz = sub.add_parser("finalise", help="temperature and test report of a model trained from a pack, on the "
                        "real validation and test images (rewrites its spec and .eval.json)")
    fz.add_argument("--model", required=True, nargs="+", help="spec JSON(s)")
    fz.add_argument("--device", default="auto")
    fz.add_argument("--limit", type=int, default=None)
    fz.set_defaults(fn=_finalise)
    pr = sub.add_parser("predict", help="print calibrated probabilities for image files")
    pr.add_argument("--model", required=True)
    pr.add_argument("--device", default="auto")
    pr.add_argument("files", nargs="+")
    pr.set_defaults(fn=_predict)
    x = sub.add_parser("explain", help="write a Grad-CAM overlay PNG")
    x.add_argument("--model", required=True)
    x.add_argument("--method", default="gradcam")
    x.add_argument("--alpha", type=float, default=0.4)
    x.add_argument("--device", default="auto")
    x.add_argument("--out", required=True)
    x.add_argument("file")
    x.set_defaults(fn=_explain)
    ins = sub.add_parser("inside", help="write the filter grid, feature maps and per-stage CAMs as PNGs (slides)")
    ins.add_argument("--model", required=True, help="path of the spec JSON")
    ins.add_argument("--method", default="gradcam", help="CAM method of the per-stage heat maps")
    ins.add_argument("--channels", type=int, default=16, help="feature maps per layer, most active first")
    ins.add_argument("--layers", default=None, help="comma-separated layers (default: the end of every stage)")
    ins.add_argument("--device", default="auto")
    ins.add_argument("--out", required=True, help="output folder (created)")
    ins.add_argument("file")
    ins.set_defaults(fn=_inside)
    g = sub.add_parser("fit-gate", help="fit the out-of-distribution gate of a model and store it in its spec")
    g.add_argument("--model", required=True, help="path of the spec JSON (rewritten; weights unchanged)")
    g.add_argument("--quantile", type=float, default=0.99, help="validation pass rate the limit is set to")
    g.add_argument("--components", type=int, default=64, help="principal directions kept exactly")
    g.add_argument("--limit", type=int, default=None, help="first N images per split (quick check)")
    g.add_argument("--no-out-of-scope", action="store_true", help="skip the out-of-scope refusal rates")
    g.add_argument("--penultimate-only", action="store_true",
                   help="model the penultimate layer alone (default: several layers, early to penultimate)")
    g.add_argument("--device", default="auto")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.set_defaults(fn=_fit_gate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medimg`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from medimg.errors import MedimgError

    try:
        return args.fn(args, argv)
    except MedimgError as err:
        print(f"medimg: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
