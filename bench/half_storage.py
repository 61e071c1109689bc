"""Re-store a shipped float32 model as float16 (halves the file), re-evaluate it and refit its gate.

Usage::

    uv run python bench/half_storage.py weights/kermany_cxr_mobilenet_v2_224.json [--modality radiograph]

The float16 weights are loaded back as float32, so the network computes in float32 with weights rounded to
11 significant bits. The test metrics and the out-of-distribution gate stored in the spec are recomputed from
the float16 file, so the spec describes exactly what is shipped; the old and new metrics are printed side by
side. The spec's ``training`` records the conversion.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medimg.models import load_model, save_weights
from medimg.training.evaluation import evaluate_split
from medimg.training.gate_fit import fit_gate
from medimg.uncertainty import views_for_modality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--modality", default="radiograph", help="TTA views to store (see medimg.uncertainty)")
    args = ap.parse_args()
    model, spec = load_model(args.spec)
    before = dict(spec.metrics.get("test", {}))
    size_before = args.spec.with_suffix(".safetensors").stat().st_size
    training = dict(spec.training, storage="float16 (re-stored from the float32 training output by "
                    "bench/half_storage.py; metrics and gate recomputed from the float16 file)")
    spec = save_weights(model, spec.replace(training=training, tta=views_for_modality(args.modality)),
                        args.spec.parent, half=True)
    report = evaluate_split(args.spec)
    summary = {k: v for k, v in report.metrics.items() if k != "confusion_matrix"}
    summary["ece_uncalibrated"] = before.get("ece_uncalibrated")
    spec = spec.replace(metrics=dict(spec.metrics, test=summary))
    from medimg.spec import save_spec

    save_spec(spec, args.spec)
    report.save(args.spec.with_name(f"{spec.name}.eval.json"))
    fit_gate(args.spec)
    size_after = args.spec.with_suffix(".safetensors").stat().st_size
    keys = ("accuracy", "auroc", "sensitivity", "specificity", "ece", "macro_f1")
    print(json.dumps({"bytes": [size_before, size_after],
                      "metrics float32 -> float16": {k: [before.get(k), summary.get(k)] for k in keys}}, indent=1))


if __name__ == "__main__":
    main()
