"""Speed of the reviewers' saliency work on one CPU budget: the method grid of one image at the model's input size
(224 px for the chest model), a 24-case gallery with batched Grad-CAMs, and the faithfulness + sanity checks of one
map.

Usage::

    uv run python bench/saliency_speed.py [--model weights/kermany_cxr_mobilenet_v2_224.json] [--threads 2] [--repeats 3]

Every number is printed beside a baseline measured in the same run (one plain Grad-CAM call, and the same work
done one call at a time), so ratios stay meaningful on a busy machine. Goals (issue 9): grid <= 1 s,
gallery <= 3 s, checks <= 3 s on 2 cores. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from medimg import explain as ex
from medimg.catalog import data_root
from medimg.evaluate import EvalReport
from medimg.io import load_image
from medimg.predict import Predictor

REPO = Path(__file__).resolve().parents[1]


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
        if dt < best:
            best, out = dt, res
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "weights" / "kermany_cxr_mobilenet_v2_224.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred = Predictor.from_spec(args.model, device="cpu")
    spec = pred.spec
    report = EvalReport.load(Path(args.model).with_name(Path(args.model).stem + ".eval.json"))
    folder = data_root() / Path(spec.training["data"]).name
    image = load_image((folder / report.ids[-1]).read_bytes())
    prediction = pred.predict(image)
    pre = prediction.preprocessed
    ex.cam(pred, pre)  # warm-up: replica, lazy init
    h, w = spec.preprocess.input_size
    print(f"{spec.name}: {h} x {w} px input, CAM layer {spec.cam_layer}, {args.threads} threads, best of {args.repeats}")

    one, _ = _best(lambda: ex.cam(pred, pre, method="gradcam"), args.repeats)
    print(f"\nbaseline: one Grad-CAM call {one * 1000:.0f} ms")

    # 1. method grid: one shared pass vs one cam() call per method
    grid_s, grid = _best(lambda: ex.method_grid(pred, pre), args.repeats)
    sep = {}
    for m in ex.GRID_METHODS:
        if m == "scorecam":
            continue  # the full Score-CAM (every channel) is not what the grid runs
        sep[m], _ = _best(lambda m=m: ex.cam(pred, pre, method=m), 1)
    print(f"\n1. method grid ({len(grid.maps)} methods, {grid.grid_label}): {grid_s:.3f} s "
          f"(goal <= 1 s: {'met' if grid_s <= 1 else 'NOT met'}; {grid_s / one:.1f}x one Grad-CAM)")
    print(f"   shared forward/backward {grid.seconds['forward/backward'] * 1000:.0f} ms")
    for m, gm in grid.maps.items():
        alone = f"{sep[m] * 1000:7.0f} ms alone" if m in sep else "   (Score-CAM on 32 channels in the grid)"
        print(f"   {gm.label:<13s} {gm.seconds * 1000:7.0f} ms in the grid  {alone}")
    same = sum(sep.values())
    print(f"   the same {len(sep)} methods one call each: {same:.3f} s -> grid without Score-CAM "
          f"{grid_s - grid.seconds.get('scorecam', 0):.3f} s ({same / max(grid_s - grid.seconds.get('scorecam', 0), 1e-9):.1f}x faster)")

    # 2. a 24-case gallery with batched Grad-CAMs (load + preprocess + one batched pass) vs one call per image
    ids = report.ids[:24]

    def gallery() -> np.ndarray:
        pres = ex.case_inputs(spec, ids, report.split)
        return ex.cam_batch(pred, np.stack([p.model_input for p in pres]), None, batch_size=24)

    gal_s, _ = _best(gallery, args.repeats)
    pres = ex.case_inputs(spec, ids, report.split)
    loop_s, _ = _best(lambda: [ex.cam(pred, p) for p in pres], 1)
    load_s, _ = _best(lambda: ex.case_inputs(spec, ids, report.split), 1)
    print(f"\n2. 24-case gallery: {gal_s:.3f} s (goal <= 3 s: {'met' if gal_s <= 3 else 'NOT met'}); of which loading "
          f"and preprocessing {load_s:.3f} s; 24 single Grad-CAM calls {loop_s:.3f} s "
          f"({loop_s / max(gal_s - load_s, 1e-9):.1f}x the batched pass)")

    # 3. faithfulness + sanity of one map
    heat = grid.maps["gradcam"].heatmap if not grid.maps["gradcam"].empty else grid.maps["gradcam++"].heatmap

    def checks() -> tuple[object, object]:
        return (ex.faithfulness(pred, pre, heat, target=grid.target_index),
                ex.sanity_check(pred, pre, "gradcam", target=grid.target_index, trained=heat))

    chk_s, (f, s) = _best(checks, args.repeats)
    f_s, _ = _best(lambda: ex.faithfulness(pred, pre, heat, target=grid.target_index), 1)
    print(f"\n3. faithfulness + sanity of one map: {chk_s:.3f} s (goal <= 3 s: {'met' if chk_s <= 3 else 'NOT met'}; "
          f"{chk_s / one:.0f}x one Grad-CAM); deletion/insertion alone {f_s:.3f} s")
    print(f"   deletion AUC {f.deletion_auc:.3f} (random {f.random_deletion_auc:.3f}), insertion AUC "
          f"{f.insertion_auc:.3f} (random {f.random_insertion_auc:.3f}); sanity rho {s.rho:.2f}: {s.verdict}")
    print(f"\nmedian of the grid's per-method times: {statistics.median(g.seconds for g in grid.maps.values()) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
