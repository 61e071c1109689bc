"""Out-of-distribution gate: the penultimate layer alone vs the multi-layer feature ensemble, per shipped model.

Both gates are fitted here the way ``medimg fit-gate`` fits them (:func:`medimg.gate.layer_features`,
:class:`medimg.ood.LayeredDistribution`): training-split statistics, each layer scaled by its validation
quantile, the limit at the split-conformal ``--quantile`` of the validation scores. Two ways of combining the
scaled layer distances are compared: their maximum (what the gate uses) and their mean. The script prints the
in-distribution test pass rate of each and, per out-of-scope reference set, the share it flags. No out-of-scope
image is used to fit anything. Numbers are printed, never asserted.

    uv run python bench/gate_layers.py [--models busi_mobilenet_v2_288,...] [--n 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from medimg import list_weights, load_spec
from medimg.errors import MedimgError
from medimg.gate import pooled_features
from medimg.models import feature_extractor, get_architecture
from medimg.ood import LayeredDistribution, conformal_threshold
from medimg.predict import Predictor
from medimg.preprocess import normalise_batch
from medimg.preprocess import run as preprocess_run
from medimg.training.reference_sets import Unreadable, near_scope_sets, out_of_scope_sets
from medimg.training.tasks import get_task, load_task_split


def _features(pred: Predictor, x: np.ndarray) -> list[np.ndarray]:
    """Stage channel means then the penultimate features (the gate's layers), through the feature taps."""
    arch = get_architecture(pred.spec.architecture)
    taps = feature_extractor(pred.model, pred.spec.architecture)
    return pooled_features(taps, arch.stage_layers, x, pred.device)

COLUMNS = ("penultimate", "max (shipped)", "mean")


def scores(gate: LayeredDistribution, fs: list[np.ndarray]) -> np.ndarray:
    """(3, N): the penultimate layer's scaled distance, the maximum and the mean over layers."""
    per = gate.layer_scores(fs)  # (L, N), each layer over its own validation limit
    return np.stack([per[-1], per.max(0), per.mean(0)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated shipped model names (default: all)")
    ap.add_argument("--n", type=int, default=100, help="images per out-of-scope set")
    ap.add_argument("--quantile", type=float, default=0.99)
    args = ap.parse_args()
    wanted = {m for m in args.models.split(",") if m}
    for path in list_weights():
        spec = load_spec(path)
        if wanted and spec.name not in wanted:
            continue
        t0 = time.time()
        pred = Predictor.from_spec(path, device="cpu")
        task_key = spec.training["config"]["task"]
        feats, labels = {}, {}
        for split in ("train", "val", "test"):
            arrays = load_task_split(task_key, split, spec.preprocess)
            feats[split] = _features(pred, normalise_batch(arrays.x.numpy(), spec.preprocess))
            labels[split] = arrays.y.numpy()
        arch = get_architecture(spec.architecture)
        names = (*arch.stage_layers, arch.penultimate_description)
        gate = LayeredDistribution.fit(names, feats["train"], labels["train"], feats["val"], args.quantile)

        limits = np.array([conformal_threshold(v, args.quantile) for v in scores(gate, feats["val"])])[:, None]
        test_pass = (scores(gate, feats["test"]) <= limits).mean(1)
        print(f"== {spec.name} ({len(names)} layers): in-distribution test pass rate "
              + ", ".join(f"{c} {p:.3f}" for c, p in zip(COLUMNS, test_pass, strict=True)), flush=True)
        task = get_task(task_key)
        sets = [*out_of_scope_sets(n=args.n, exclude=task.oos_exclude), *near_scope_sets(task_key=task_key)]
        for name, images in sets:
            xs = []
            for img in images:
                if isinstance(img, Unreadable):
                    continue
                try:
                    xs.append(preprocess_run(img, spec.preprocess).model_input)
                except MedimgError:
                    continue
            if xs:
                flag = (scores(gate, _features(pred, np.stack(xs))) > limits).mean(1)
                print(f"   {name:<40s} n={len(xs):4d}  flagged: "
                      + "  ".join(f"{c} {f:.2f}" for c, f in zip(COLUMNS, flag, strict=True)), flush=True)
        print(f"   ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
