"""Print the latency of each step of one analysis, and batched vs per-image Grad-CAM, on CPU (and CUDA).

Usage::

    uv run python bench/speed.py                        # shipped chest X-ray model if present, else the tiny model
    uv run python bench/speed.py --model tiny --repeats 30
    uv run python bench/speed.py --model weights/kermany_cxr_mobilenet_v2_224.json --device cpu --threads 2

Steps timed, p50 / p95 over ``--repeats`` runs after one warm-up: decode (``medimg.io.load_image`` of a real
chest DICOM from the shared data and of a Kermany JPEG), preprocess, predict (network + calibration), the
applicability gate (network-free checks + the out-of-distribution features and score), Grad-CAM
(on a private replica, see ``medimg.explain``), overlay (map back to the original size + colour blend).
Then Grad-CAM's cost as a ratio to plain inference, and ``cam_batch`` over ~64 test images against a
per-image pytorch-grad-cam loop, measured in the same run. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from medimg import explain as ex
from medimg.catalog import data_root
from medimg.errors import MedimgError
from medimg.explain.maps import cam_layer_of
from medimg.gate import check_distribution, check_image
from medimg.io import load_image
from medimg.models import create_model
from medimg.predict import Predictor
from medimg.spec import ModelSpec, PreprocessConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "weights" / "kermany_cxr_mobilenet_v2_224.json"
DICOM = "dicom/cxr/RG1_UNCR.dcm"  # NEMA WG04 RG1 chest CR, 1955 x 1841, 16-bit, uncompressed
DICOM_J2K = "dicom/cxr/RG1_J2KI.dcm"  # the same image, JPEG 2000


def tiny_predictor(device: str) -> Predictor:
    """The unit tests' tiny model: a seeded, untrained SmallCNN on 64 x 64 grayscale input."""
    torch.manual_seed(0)
    spec = ModelSpec(name="tiny_smallcnn", title="Tiny test CNN", architecture="smallcnn",
                     labels=("normal", "pneumonia"),
                     preprocess=PreprocessConfig(input_size=(64, 64), in_chans=1, mean=(0.5,), std=(0.25,)),
                     positive_label=1, temperature=1.5, cam_layer="features.conv3")
    return Predictor(create_model("smallcnn", 1, 2).eval(), spec, device=device)


def load_predictor(model: str, device: str) -> Predictor:
    if model == "tiny" or (model == "auto" and not SHIPPED.exists()):
        return tiny_predictor(device)
    return Predictor.from_spec(SHIPPED if model == "auto" else model, device=device)


def timeit(fn: Callable[[], object], repeats: int, sync: bool) -> np.ndarray:
    """(repeats, 2): wall and process-CPU seconds per call, ``repeats`` calls after one warm-up.

    CPU time (all threads of this process) shows the work done even when a busy machine starves the process
    of CPU, where wall time mostly measures waiting.
    """
    fn()
    out = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return np.asarray(out)


def row(name: str, t: np.ndarray) -> str:
    wall, cpu = t[:, 0], t[:, 1]
    return (f"  {name:<34s} wall p50 {np.percentile(wall, 50) * 1e3:9.2f} ms  p95 "
            f"{np.percentile(wall, 95) * 1e3:9.2f} ms   cpu p50 {np.percentile(cpu, 50) * 1e3:9.2f} ms")


def p50(t: np.ndarray) -> float:
    """Median wall seconds."""
    return float(np.percentile(t[:, 0], 50))


def sample_inputs(pred: Predictor, n: int) -> np.ndarray:
    """(n, C, H, W) normalised inputs: Kermany test images (both classes) when present, else seeded noise."""
    every = sorted((data_root() / "kermany-cxr" / "test").glob("*/*.jpeg"))
    files = every[:: max(1, len(every) // n)][:n]
    xs = []
    for f in files:
        try:
            xs.append(pred.preprocess(load_image(f)).model_input)
        except MedimgError:
            continue
    if len(xs) < n:
        c = pred.spec.preprocess.in_chans
        h, w = pred.spec.preprocess.input_size
        rng = np.random.default_rng(0)
        xs += list(rng.normal(0, 1, (n - len(xs), c, h, w)).astype(np.float32))
    return np.stack(xs)


def bench_device(pred: Predictor, repeats: int, n_batch: int) -> None:
    sync = pred.device.type == "cuda"
    root = data_root()
    print(f"\n== {pred.spec.name} ({pred.spec.architecture}, input {pred.spec.preprocess.input_size}) on "
          f"{pred.device.type}" + (f" ({torch.cuda.get_device_name(pred.device)})" if sync else
                                   f", {torch.get_num_threads()} torch threads"))
    if hasattr(os, "getloadavg"):
        print(f"   machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (wall times are only "
              "meaningful when the load is below the CPU count)")
    sources = [("DICOM " + Path(DICOM).name, root / DICOM), ("DICOM " + Path(DICOM_J2K).name, root / DICOM_J2K)]
    jpegs = sorted((root / "kermany-cxr" / "test" / "PNEUMONIA").glob("*.jpeg"))
    if jpegs:
        sources.append(("JPEG " + jpegs[0].name, jpegs[0]))
    ratio = None
    for label, path in sources:
        if not path.exists():
            print(f"  [{label}] skipped: {path} not found")
            continue
        data = path.read_bytes()
        try:
            img = load_image(data)
        except (MedimgError, ImportError) as err:
            print(f"  [{label}] skipped: {type(err).__name__}: {err}")
            continue
        print(f"  [{label}] {img.shape[0]} x {img.shape[1]}, {len(data) / 2**20:.1f} MB")
        pre = pred.preprocess(img)
        x = pre.model_input[None]
        cam = ex.cam(pred, pre)
        display = img.display()
        t = {
            "decode": timeit(lambda data=data: load_image(data), repeats, False),
            "preprocess": timeit(lambda img=img: pred.preprocess(img), repeats, False),
            "predict (network + calibration)": timeit(lambda x=x: pred.predict_proba(x), repeats, sync),
            "applicability gate (checks + OOD)": timeit(
                lambda img=img, pre=pre: check_image(img, pre, pred.spec) + check_distribution(pred, pre),
                repeats, sync),
            "Grad-CAM (replica)": timeit(lambda pre=pre: ex.cam(pred, pre), repeats, sync),
            "overlay (map back + blend)": timeit(
                lambda cam=cam, display=display: ex.overlay(display, cam.heatmap_original(display.shape[:2]), 0.4),
                repeats, False),
        }
        for k, v in t.items():
            print(row(k, v))
        total = sum(p50(v) for v in t.values())
        print(f"  {'one analysis (sum of wall p50)':<34s}      {total * 1e3:9.2f} ms")
        ratio = p50(t["Grad-CAM (replica)"]) / p50(t["predict (network + calibration)"])
    if ratio is not None:
        print(f"  Grad-CAM / plain inference (wall p50): {ratio:.1f}x")
        if pred.spec.tta:
            t_tta = timeit(lambda pre=pre: pred.tta_probs(pre.model_input), repeats, sync)
            print(row(f"TTA uncertainty ({len(pred.spec.tta)} views, 1 batch)", t_tta))
    bench_test_set(pred, sync)

    x = sample_inputs(pred, n_batch)
    layer = cam_layer_of(pred.spec)
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    replica = copy.deepcopy(pred.model).eval()  # the library as usually called: parameters keep requires_grad
    targets = pred.predict_proba(x).argmax(1)

    def loop() -> np.ndarray:
        with GradCAM(model=replica, target_layers=[replica.get_submodule(layer)]) as c:
            return np.stack([c(torch.from_numpy(x[i : i + 1]), [ClassifierOutputTarget(int(targets[i]))])[0]
                             for i in range(len(x))])

    def batched() -> np.ndarray:
        return ex.cam_batch(pred, x, list(targets), batch_size=32)

    reps = max(2, repeats // 5)
    t_loop = timeit(loop, reps, sync)
    t_batch = timeit(batched, reps, sync)
    diff = float(np.abs(loop() - batched()).max())
    print(f"  Grad-CAM over {len(x)} test images ({reps} runs):")
    print(row("per-image pytorch-grad-cam loop", t_loop))
    print(row("cam_batch (batch 32)", t_batch))
    print(f"  per image: loop {p50(t_loop) / len(x) * 1e3:.2f} ms, batched {p50(t_batch) / len(x) * 1e3:.2f} ms; "
          f"speed-up {p50(t_loop) / p50(t_batch):.1f}x wall, "
          f"{np.median(t_loop[:, 1]) / max(np.median(t_batch[:, 1]), 1e-9):.1f}x cpu; max |difference| {diff:.1e}")


def bench_test_set(pred: Predictor, sync: bool) -> None:
    """Test-split evaluation throughput: decode + preprocess from disk, then the batched network pass."""
    task = pred.spec.training.get("config", {}).get("task")
    if not task:
        print("  test-set evaluation: skipped (the model has no training task)")
        return
    from medimg.predict import batch_logits
    from medimg.training.tasks import load_task_split

    t0 = time.perf_counter()
    try:
        arrays = load_task_split(task, "test", pred.spec.preprocess)
    except (OSError, MedimgError) as err:
        print(f"  test-set evaluation: skipped ({type(err).__name__})")
        return
    t1 = time.perf_counter()
    batch_logits(pred.model, arrays.x[:64], pred.spec.preprocess, pred.device)  # warm-up
    if sync:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    batch_logits(pred.model, arrays.x, pred.spec.preprocess, pred.device, batch_size=256)
    if sync:
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    n = len(arrays.y)
    print(f"  test-set evaluation ({task}, {n} images): decode + preprocess {n / (t1 - t0):8.1f} img/s, "
          f"network (batch 256) {n / (t3 - t2):8.1f} img/s, end to end {n / (t1 - t0 + t3 - t2):8.1f} img/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="auto", help="spec JSON path, 'tiny', or 'auto' (shipped if present)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per step (after one warm-up)")
    ap.add_argument("--device", default="all", help="'cpu', 'cuda' or 'all' (CPU, then CUDA when present)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--batch-images", type=int, default=64, help="images in the batched Grad-CAM comparison")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for dev in devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("\n== cuda: not available")
            continue
        bench_device(load_predictor(args.model, dev), args.repeats, args.batch_images)


if __name__ == "__main__":
    main()
