"""Memory of one analysis of a large image, as RELIABILITY.md's contract reads it: every accepted input is analysed
within +256 MB of the server's steady state, and memory comes back afterwards.

Runs each case in a fresh subprocess: load the model and warm it up on a small image (the steady state), then
decode a synthetic 6000 x 6000 16-bit image (DICOM, PNG, TIFF) from bytes in memory, preprocess, predict, run
Grad-CAM and the overlay as the app does, and report the peak resident set size above the steady state
(``ru_maxrss``) and the RSS after the result is dropped. Prints a table and a JSON line.

    uv run python bench/memory.py [--model weights/kermany_cxr_mobilenet_v2_224.json] [--side 6000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import gc, io, json, sys, time
import numpy as np

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20

def peak_mb():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: "5" resets the peak RSS (VmHWM) to the current RSS
        fh.write("5")

kind, side, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import torch
torch.set_num_threads(2)
import medimg
from medimg.explain import cam, overlay
from medimg.predict import Predictor

pred = Predictor.from_spec(model, device="cpu")

def make(kind, side, seed):
    rng = np.random.default_rng(seed)
    rows = ((np.sin(np.arange(side, dtype=np.float32) / 300.0) + 1) * 1000).astype(np.uint16)
    cols = ((np.cos(np.arange(side, dtype=np.float32) / 200.0) + 1) * 1000).astype(np.uint16)
    px = rows[:, None] + cols[None, :]
    px += rng.integers(0, 50, side, dtype=np.uint16)[None, :]
    buf = io.BytesIO()
    if kind == "dicom":
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.Modality, ds.BodyPartExamined = "DX", "CHEST"
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = px.tobytes()
        ds.save_as(buf, enforce_file_format=True)
    else:
        from PIL import Image
        Image.fromarray(px).save(buf, format="PNG" if kind == "png" else "TIFF")
    return buf.getvalue()

def analyse(data):
    image = medimg.load_image(data)
    window = image.default_window
    shown = image.display(window, max_side=1024)  # what the viewer panel renders (medimg.ui.viewer.render)
    r = pred.predict(image)
    c = cam(pred, r.preprocessed, method="gradcam")
    rgb = overlay(shown, c.heatmap_original(shown.shape[:2]), alpha=0.4)
    return float(r.probs.max()), rgb.shape

# steady state: the model loaded and warmed up on a small image of the same kind, twice
small = make(kind, 512, 1)
analyse(small); analyse(small)
data = make(kind, side, 2)
gc.collect()
base = rss_mb()  # the steady state, with the upload's bytes already held (as Streamlit holds them)
reset_peak()
t0 = time.perf_counter()
out = analyse(data)
seconds = time.perf_counter() - t0
peak = peak_mb()
del out
gc.collect()
after = rss_mb()
print(json.dumps({"kind": kind, "side": side, "file_mb": round(len(data) / 2**20, 1),
                  "steady_mb": round(base, 1), "peak_above_steady_mb": round(peak - base, 1),
                  "after_mb": round(after - base, 1), "seconds": round(seconds, 2)}))
'''


def run_case(kind: str, side: int, model: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(side), model], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    if proc.returncode != 0:
        return {"kind": kind, "side": side, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "weights" / "kermany_cxr_mobilenet_v2_224.json"))
    ap.add_argument("--side", type=int, default=6000)
    ap.add_argument("--kinds", default="dicom,png,tiff")
    args = ap.parse_args(argv)
    rows = [run_case(k, args.side, args.model) for k in args.kinds.split(",")]
    print(f"{'input':<22}{'file MB':>9}{'peak above steady MB':>22}{'after MB':>10}{'seconds':>9}   (contract: +256 MB)")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']} {r['side']}^2: error {r['error']}")
            continue
        print(f"{r['kind'] + ' ' + str(r['side']) + '^2 16-bit':<22}{r['file_mb']:>9}{r['peak_above_steady_mb']:>22}"
              f"{r['after_mb']:>10}{r['seconds']:>9}")
    print(json.dumps({"memory": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
