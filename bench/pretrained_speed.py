"""Training throughput on the CPU: images per second of one AdamW step (forward, backward, update) at batch 32.

Usage::

    nice -n 10 uv run python bench/pretrained_speed.py [--threads 2] [--steps 3]

Measures MobileNetV2 at 160 and 224 px with and without ``channels_last`` (NHWC), a frozen-backbone step
(``--freeze-epochs``: only the head trains) and the ResNet-18 128 px baseline, all in the same run, and prints
each as img/s and as a ratio to the baseline. The load average is printed beside them: other processes on the
machine slow every row alike, so read the ratios. Writes ``bench/results/pretrained_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from medimg.models import create_model
from medimg.models.pretrained import head_parameter_names

RESULTS = Path(__file__).resolve().parent / "results"


def model_step_rate(model: nn.Module, size: int, channels_last: bool, batch: int, steps: int, in_chans: int = 3,
                    bf16: bool = False) -> float:
    """Images per second of ``steps`` AdamW steps of ``model`` (train mode, its trainable parameters) on random
    (batch, in_chans, size, size) inputs with 3-class targets, after one warm-up step; ``bf16``: autocast."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.train().to(memory_format=fmt)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, in_chans, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 3, (batch,))

    def one() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return batch * steps / (time.perf_counter() - t0)


def step_rate(arch: str, size: int, channels_last: bool, batch: int, steps: int, in_chans: int = 3,
              frozen: bool = False) -> float:
    """Images per second of ``steps`` AdamW steps of a registry ``arch`` after one warm-up step."""
    torch.manual_seed(0)
    model = create_model(arch, in_chans, 3)
    head = head_parameter_names(model)
    if frozen:
        for n, p in model.named_parameters():
            p.requires_grad_(n in head)
    return model_step_rate(model, size, channels_last, batch, steps, in_chans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [("resnet18", 128, False, False), ("mobilenet_v2", 160, False, False), ("mobilenet_v2", 160, True, False),
            ("mobilenet_v2", 224, False, False), ("mobilenet_v2", 224, True, False),
            ("mobilenet_v2", 224, True, True)]
    load0 = os.getloadavg()[0]
    out = []
    base = None
    print(f"threads {args.threads}, batch {args.batch}, {args.steps} timed steps; load average {load0:.2f}")
    print("| architecture | px | channels_last | frozen backbone | img/s | x ResNet-18 128 px |")
    print("|---|---|---|---|---|---|")
    for arch, size, cl, frozen in rows:
        r = step_rate(arch, size, cl, args.batch, args.steps, frozen=frozen)
        base = base or r
        out.append({"arch": arch, "size": size, "channels_last": cl, "frozen": frozen, "img_per_s": round(r, 1),
                    "ratio": round(r / base, 2)})
        print(f"| {arch} | {size} | {cl} | {frozen} | {r:.1f} | {r / base:.2f} |", flush=True)
    load1 = os.getloadavg()[0]
    print(f"load average after: {load1:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pretrained_speed.json").write_text(json.dumps(
        {"threads": args.threads, "batch": args.batch, "steps": args.steps, "load_before": load0,
         "load_after": load1, "rows": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
