"""Which layer should a model's heat map come from? Resolution against faithfulness, on the BUSI lesion masks.

For each candidate layer of the BUSI model (default: the last block at each resolution of MobileNetV2), every
benign or malignant test image (the normal ones have no lesion) is explained for its true class, and the map
is scored by

- the pointing game and the share of map energy inside the expert lesion mask (localisation; chance = the
  mask's area share), and
- deletion / insertion AUC (Petsiuk et al., BMVC 2018) against the same for a random map (faithfulness to the
  model: lower deletion and higher insertion than random mean the map ranks pixels the model uses).

Printed as a table and written to ``bench/results/cam_layers.json``; numbers are printed, never asserted.

Usage::

    uv run python bench/cam_layers.py [--model weights/busi_mobilenet_v2_288.json] [--faithful 40]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from cam_localisation import lesion_inputs  # bench/ is the script's folder

from medimg import explain as ex
from medimg.explain.faithfulness import faithfulness
from medimg.explain.localisation import summarise_localisation
from medimg.predict import Predictor

REPO = Path(__file__).resolve().parents[1]
#: MobileNetV2: the last block at strides 8, 16 and 32, and the final 1x1 convolution (the default CAM layer).
CANDIDATES = "features.6,features.13,features.16,features.18"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "weights" / "busi_mobilenet_v2_288.json"))
    ap.add_argument("--layers", default=CANDIDATES)
    ap.add_argument("--methods", default="gradcam,hirescam")
    ap.add_argument("--faithful", type=int, default=40, help="images scored by deletion/insertion (0: skip)")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    pred = Predictor.from_spec(args.model, device="cpu")
    spec = pred.spec
    x, masks, targets, images = lesion_inputs(spec, args.split)
    fidx = np.linspace(0, len(targets) - 1, min(args.faithful, len(targets))).astype(int) if args.faithful else []
    print(f"{spec.name}: {len(targets)} {args.split} images with a lesion mask; faithfulness on {len(fidx)} of them")
    print(f"{'layer':<12s} {'method':<9s} {'grid':>6s} {'pointing':>9s} {'energy in':>10s} {'x chance':>9s} "
          f"{'deletion':>9s} {'random':>7s} {'insertion':>10s} {'random':>7s} {'s':>6s}")
    out: dict[str, dict] = {}
    from torchvision.models.feature_extraction import create_feature_extractor

    for layer in args.layers.split(","):
        fx = create_feature_extractor(pred.model, return_nodes={layer: "f"}).eval()
        with torch.no_grad():
            grid = tuple(fx(torch.zeros(1, spec.preprocess.in_chans, *spec.preprocess.input_size))["f"].shape[-2:])
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            maps = ex.cam_batch(pred, x, targets, method=method, layer=layer)
            s = summarise_localisation(maps, masks, 0)
            dele, ins, rdel, rins = [], [], [], []
            for i in fidx:
                pre = SimpleNamespace(image=images[i])
                f = faithfulness(pred, pre, maps[i], target=targets[i], steps=10, n_random=1)
                dele.append(f.deletion_auc)
                ins.append(f.insertion_auc)
                rdel.append(f.random_deletion_auc)
                rins.append(f.random_insertion_auc)
            secs = time.perf_counter() - t0
            row = {"grid": list(grid), "pointing": s.pointing_accuracy, "energy_inside": s.energy_inside,
                   "energy_ratio": s.energy_ratio, "chance": s.chance, "n": s.n,
                   "deletion_auc": float(np.mean(dele)) if dele else None,
                   "random_deletion_auc": float(np.mean(rdel)) if rdel else None,
                   "insertion_auc": float(np.mean(ins)) if ins else None,
                   "random_insertion_auc": float(np.mean(rins)) if rins else None, "seconds": secs}
            out[f"{layer} {method}"] = row
            fmt = (lambda v: f"{v:.3f}" if v is not None else "-")  # noqa: E731
            print(f"{layer:<12s} {method:<9s} {grid[0]:>3d}x{grid[1]:<2d} {s.pointing_accuracy:9.3f} "
                  f"{s.energy_inside:10.3f} {s.energy_ratio:9.2f} {fmt(row['deletion_auc']):>9s} "
                  f"{fmt(row['random_deletion_auc']):>7s} {fmt(row['insertion_auc']):>10s} "
                  f"{fmt(row['random_insertion_auc']):>7s} {secs:6.1f}", flush=True)
    res = REPO / "bench" / "results" / "cam_layers.json"
    res.write_text(json.dumps({"model": spec.name, "split": args.split, "rows": out}, indent=1) + "\n")
    print(f"written {res.relative_to(REPO)}")


if __name__ == "__main__":
    main()
