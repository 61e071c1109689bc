"""Mutation fuzzing of medimg.io.load_image, run in a subprocess by test_io_fuzz.py (a crash kills only this).

Usage: ``python fuzz_worker.py SEED N FILE [FILE ...]``. Mutant ``i`` is fully determined by ``(SEED, i)``.
Prints one JSON object on stdout: counts per outcome (``ok``, typed error class names), the mutants that raised
anything else (``raw``) or returned a bad image (``bad``), the slowest mutant and the RSS growth. Progress
lines ``mutant i fixture`` go to stderr so that a crash can be reproduced.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

INTERESTING = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff",
               b"\x00\x80", b"\x01\x00", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\xe0\x7f\x10\x00"]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """1-3 random edits: byte flips, bit flips, interesting values (biased to the header), truncation,
    chunk duplication or deletion."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        if not buf:
            break
        kind = int(rng.integers(0, 6))
        n = len(buf)
        head = min(n, 4096)
        if kind == 0:  # random bytes
            for _ in range(int(rng.integers(1, 17))):
                buf[int(rng.integers(0, n))] = int(rng.integers(0, 256))
        elif kind == 1:  # bit flips
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(0, n))
                buf[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:  # interesting values, mostly in the header
            value = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
            i = int(rng.integers(0, head if rng.random() < 0.8 else n))
            buf[i : i + len(value)] = value
        elif kind == 3 and n > 1:  # truncation
            del buf[int(rng.integers(1, n)) :]
        elif kind == 4:  # duplicate a chunk
            i = int(rng.integers(0, n))
            j = min(n, i + int(rng.integers(1, 512)))
            k = int(rng.integers(0, n))
            buf[k:k] = buf[i:j]
        else:  # delete a chunk
            i = int(rng.integers(0, n))
            del buf[i : i + int(rng.integers(1, 256))]
    return bytes(buf)


def check_image(img) -> str | None:  # noqa: ANN001 - MedicalImage, imported lazily
    px = img.pixels
    if px.dtype != np.float32 or px.ndim not in (2, 3) or (px.ndim == 3 and px.shape[2] != 3):
        return f"bad array {px.dtype} {px.shape}"
    if px.size == 0 or not np.isfinite(px).all():
        return "empty or non-finite pixels"
    if not img.windows or not all(np.isfinite([w.center, w.width]).all() and w.width > 0 for w in img.windows):
        return "bad windows"
    disp = img.display()
    if disp.shape != px.shape or not np.isfinite(disp).all() or disp.min() < 0 or disp.max() > 1:
        return "bad display"
    if not 0 <= img.frame_index < img.n_frames:
        return "bad frame index"
    return None


def _import_medimg_io_only() -> None:
    """Make ``import medimg.io`` skip ``medimg/__init__.py`` (which imports scikit-learn and friends): the
    worker then starts in about a second, and proves that medimg.io needs nothing beyond its own imports."""
    if "medimg" in sys.modules:
        return
    pkg = types.ModuleType("medimg")
    pkg.__path__ = [str(Path(__file__).resolve().parents[2] / "medimg")]
    sys.modules["medimg"] = pkg


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    seed, count, paths = int(argv[1]), int(argv[2]), argv[3:]
    _import_medimg_io_only()
    from medimg.errors import MedimgError
    from medimg.io import load_image

    fixtures = [(Path(p).name, Path(p).read_bytes()) for p in paths]
    for _, data in fixtures:  # warm up decoders and imports
        try:
            load_image(data)
        except MedimgError:
            pass
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes: dict[str, int] = {}
    raw: list[dict] = []
    bad: list[dict] = []
    slowest = (0.0, "")
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        name, data = fixtures[int(rng.integers(0, len(fixtures)))]
        mutant = mutate(data, rng)
        print(f"mutant {i} {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            img = load_image(mutant)
            problem = check_image(img)
            key = "ok"
            if problem:
                bad.append({"i": i, "fixture": name, "problem": problem})
        except MedimgError as err:
            key = type(err).__name__
            if not str(err) or "Traceback" in str(err):
                bad.append({"i": i, "fixture": name, "problem": "empty message"})
        except ValueError as err:  # frame errors are impossible here (frame=None): count as raw
            key = "raw"
            raw.append({"i": i, "fixture": name, "type": type(err).__name__})
        except BaseException as err:  # noqa: BLE001 - everything else is a finding
            if isinstance(err, KeyboardInterrupt):
                raise
            key = "raw"
            raw.append({"i": i, "fixture": name, "type": type(err).__name__})
        elapsed = time.perf_counter() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, f"{i} {name}")
        outcomes[key] = outcomes.get(key, 0) + 1
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": count, "outcomes": outcomes, "raw": raw, "bad": bad, "slowest_s": slowest[0],
                      "slowest": slowest[1], "rss_growth_mb": (rss1 - rss0) / 1024.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
