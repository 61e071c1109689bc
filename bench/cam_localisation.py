"""Do the saliency maps of the BUSI model fall on the expert lesion masks? Pointing game and energy inside.

Usage::

    uv run python bench/cam_localisation.py [--model weights/busi_mobilenet_v2_288.json] [--split test]

For every benign or malignant image of the split (normal images have no lesion), each CAM method explains the
true class; the masks go through the model's own preprocessing. Printed beside two reference maps measured in
the same run: a uniform map (chance: the mask's area share) and a centred Gaussian (lesions tend to be imaged
in the middle of the field). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from medimg import explain as ex
from medimg.catalog import data_root
from medimg.explain.localisation import summarise_localisation
from medimg.predict import Predictor
from medimg.preprocess import normalise_batch
from medimg.spec import ModelSpec
from medimg.training.masks import load_masks
from medimg.training.tasks import load_task_split

REPO = Path(__file__).resolve().parents[1]


def lesion_inputs(spec: ModelSpec, split: str = "test") -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray]:
    """The BUSI images of ``split`` that have a lesion (benign, malignant) as the model's inputs, with their masks.

    Returns
    -------
    x : (N, C, H, W) float32 ndarray
        Normalised model inputs.
    masks : (N, H, W) bool ndarray
        Expert lesion masks through the model's own preprocessing.
    targets : list of int
        True class of each image.
    images : (N, H, W, C) float32 ndarray in [0, 1]
        The preprocessed images before normalisation.
    """
    arrays = load_task_split("busi", split, spec.preprocess)
    keep = [i for i, y in enumerate(arrays.y.tolist()) if spec.labels[y] != "normal"]
    masks = load_masks(data_root() / "busi", [arrays.ids[i] for i in keep], spec.preprocess)[:, 0].numpy() > 0.5
    images = arrays.x[keep]
    x = normalise_batch(images, spec.preprocess).numpy()
    return x, masks, [int(arrays.y[i]) for i in keep], images.numpy().transpose(0, 2, 3, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "weights" / "busi_mobilenet_v2_288.json"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--methods", default="gradcam,hirescam,gradcam++,xgradcam,layercam,eigencam",
                    help="comma-separated CAM methods (Score-CAM costs one forward pass per channel: add it on a GPU)")
    ap.add_argument("--layer", default=None, help="CAM target layer (default: the spec's cam_layer)")
    ap.add_argument("--tolerance", type=int, default=0, help="mask dilation for the pointing game, pixels")
    args = ap.parse_args()
    pred = Predictor.from_spec(args.model, device="cpu")
    spec = pred.spec
    x, masks, targets, _ = lesion_inputs(spec, args.split)
    h, w = spec.preprocess.input_size
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2) / 2)
    rows = {"uniform map (chance)": np.ones((len(targets), h, w)), "centred Gaussian": np.repeat(centre[None], len(targets), 0)}
    seconds = {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        rows[method] = ex.cam_batch(pred, x, targets, method=method, layer=args.layer)
        seconds[method] = time.perf_counter() - t0
    print(f"{spec.name}: {len(targets)} {args.split} images with a lesion mask (benign + malignant), "
          f"maps for the true class at {args.layer or spec.cam_layer}, input {h} x {w}")
    print(f"{'map':<22s} {'pointing':>9s} {'x chance':>9s} {'energy in':>10s} {'x chance':>9s} {'seconds':>8s}")
    out = {}
    for name, maps in rows.items():
        s = summarise_localisation(maps, masks, args.tolerance)
        out[name] = {"pointing": s.pointing_accuracy, "energy_inside": s.energy_inside, "chance": s.chance,
                     "n": s.n}
        # a uniform map's maximum is everywhere: report chance for it rather than a trivial hit
        pointing = s.chance if name.startswith("uniform") else s.pointing_accuracy
        print(f"{name:<22s} {pointing:9.3f} {pointing / s.chance:9.2f} {s.energy_inside:10.3f} "
              f"{s.energy_ratio:9.2f} {seconds.get(name, 0.0):8.2f}")
    print(json.dumps({"n": len(targets), "mean_mask_area": out["uniform map (chance)"]["chance"]}))


if __name__ == "__main__":
    main()
