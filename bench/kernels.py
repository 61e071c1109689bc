"""Preprocessing and the heat-map overlay beside the fastest well-kept implementations, measured in the same run.

- Preprocessing of a 2k radiograph (window + resize to the model input): :func:`medimg.preprocess.run` (the whole
  contract: window, channels, geometry with block area-averaging and scikit-image's anti-aliased resize, every
  step kept for display) against torch's anti-aliased bilinear ``interpolate`` of the windowed image (the
  windowing done by numpy, as it must be; the interpolation alone is also shown).
- The overlay of a heat map at screen size (the app blends at most 1024 px): :func:`medimg.explain.overlay`
  against pytorch-grad-cam's ``show_cam_on_image`` (OpenCV colour map and blend) on the same inputs.

    uv run python bench/kernels.py [--repeats 30] [--threads 2]

Prints p50 wall times and the ratio medimg / reference (the goal: within 2x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np


def _p50(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    from pytorch_grad_cam.utils.image import show_cam_on_image

    import medimg
    from medimg.catalog import data_root
    from medimg.explain import overlay
    from medimg.io.image import apply_window
    from medimg.preprocess import run
    from medimg.spec import load_spec

    torch.set_num_threads(args.threads)
    spec = load_spec(os.path.join(os.path.dirname(__file__), "..", "weights", "kermany_cxr_mobilenet_v2_224.json"))
    image = medimg.load_image(data_root() / "dicom" / "cxr" / "RG1_UNCR.dcm")
    win = image.default_window
    size = tuple(spec.preprocess.input_size)

    def torch_path() -> np.ndarray:
        x = torch.from_numpy(apply_window(image.pixels, win, invert=image.invert))[None, None]
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()

    windowed = torch.from_numpy(apply_window(image.pixels, win, invert=image.invert))[None, None]
    rows = [
        (f"preprocess.run (2k radiograph -> {size[0]} px)", _p50(lambda: run(image, spec.preprocess), args.repeats),
         "window + torch interpolate(antialias)", _p50(torch_path, args.repeats)),
        ("  (torch interpolate alone)", None, "interpolate(antialias) of the windowed image",
         _p50(lambda: F.interpolate(windowed, size=size, mode="bilinear", antialias=True), args.repeats)),
    ]
    rng = np.random.default_rng(0)
    display = image.display(max_side=1024)
    rgb = np.repeat(display[..., None], 3, axis=2).astype(np.float32)
    heat = rng.uniform(0, 1, display.shape[:2]).astype(np.float32)
    rows.append((f"explain.overlay ({display.shape[0]} x {display.shape[1]})",
                 _p50(lambda: overlay(display, heat, alpha=0.4), args.repeats),
                 "pytorch-grad-cam show_cam_on_image (OpenCV)",
                 _p50(lambda: show_cam_on_image(rgb, heat, use_rgb=True, image_weight=0.6), args.repeats)))
    print(f"p50 wall ms over {args.repeats} runs, {args.threads} torch threads, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, ours, ref_name, ref in rows:
        ratio = f"{ours / ref:5.2f}x" if ours is not None else "     "
        mine = f"{ours:8.2f}" if ours is not None else " " * 8
        print(f"  {name:<44}{mine}  vs {ref_name:<46}{ref:8.2f}   ratio {ratio}")


if __name__ == "__main__":
    main()
