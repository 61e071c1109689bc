"""The head CT model on the real head CT series (``dicom/head-ct``, 30 slices of CQ500-CT-1, all read as
haemorrhage at the scan level): predictions and applicability-gate verdicts under each CT window.

Usage::

    uv run python bench/head_ct_dicom.py --model runs/pretrained/head_ct_mobilenet_v2_224.json

The model was trained on Kitamura's PNG slices, already shown in a brain window (8-bit, not HU) and cut tightly
round the head; a DICOM slice is in HU: the spec's preprocessing shows it in its own window (``HU 40/80``) and cuts
it to the head (``roi="foreground"``). For the model's own window and each CT preset fed instead (the header's
30/300, brain 40/80, subdural 75/215, stroke 40/40 and bone 600/2800) the script prints how many slices the gate
passes, at which heights (z, mm), which checks fail, and the mean haemorrhage probability. Only scan-level labels exist for this series (slices far from the bleed
show none), so the probabilities are descriptive, not an accuracy. Writes ``bench/results/head_ct_dicom.json``.
The series is a display and demo set, never training data.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from medimg.catalog import data_root
from medimg.io import load_image
from medimg.io.image import Window
from medimg.predict import Predictor

RESULTS = Path(__file__).resolve().parent / "results"

#: (name, Window Center, Window Width) in HU, the issue's CT presets.
WINDOWS = (("brain", 40.0, 80.0), ("subdural", 75.0, 215.0), ("stroke", 40.0, 40.0), ("bone", 600.0, 2800.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    args = ap.parse_args()
    pred = Predictor.from_spec(args.model, device="cpu")
    root = data_root() / "dicom" / "head-ct"
    rows = sorted(csv.DictReader((root / "MANIFEST.csv").open()), key=lambda r: float(r["z_mm"]))
    files = [root / r["path"] for r in rows]
    z = [float(r["z_mm"]) for r in rows]
    images = [load_image(f) for f in files]
    pos = pred.spec.labels.index("hemorrhage")
    out = {}
    print(f"{len(files)} slices; model {pred.spec.name}")
    print("| window fed to the network | gate passed | passed at z (mm) | failing checks | mean P(haemorrhage) | "
          "slices called haemorrhage |")
    print("|---|---|---|---|---|---|")
    own = f"model's own ({pred.spec.preprocess.window})"
    header = images[0].default_window
    for name, c, w in ((own, None, None), ("header", header.center, header.width), *WINDOWS):
        passed, fails, probs, called, at = 0, Counter(), [], 0, []
        for im, zi in zip(images, z, strict=True):
            win = None if c is None else Window(c, w, name, "LINEAR")
            r = pred.predict(im, window=win, tta=False)
            passed += r.gate.passed
            if r.gate.passed:
                at.append(zi)
            fails.update(f.name for f in r.gate.failures)
            probs.append(float(r.probs[pos]))
            called += r.label == "hemorrhage"
        out[name] = {"passed": passed, "n": len(images), "passed_z_mm": at, "failing": dict(fails),
                     "mean_p": float(np.mean(probs)), "called_hemorrhage": called}
        span = f"{min(at):g} to {max(at):g}" if at else "-"
        print(f"| {name} | {passed}/{len(images)} | {span} | {dict(fails) or '-'} | {np.mean(probs):.3f} | {called} |",
              flush=True)
    print(f"slices from z = {z[0]:g} (skull base) to {z[-1]:g} mm (vertex)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "head_ct_dicom.json").write_text(json.dumps({"model": pred.spec.name, "windows": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
