"""Data packs: a task's preprocessed splits in one compact file, to train on another machine (a GPU host)
that has no copy of the data, then finish the model here on the real images (:func:`finalise`).

A pack holds, for each split, every image exactly as training sees it before normalisation (the task's
geometry, the model's input size and channels), stored as 8-bit JPEG or WebP (lossy, quality recorded) or
PNG (lossless), with labels, image ids and the sha256 of the source manifest. It is a plain ``.npz`` of numeric
arrays, read with numpy's default that refuses object arrays: no Python objects are ever unpickled.

The honest split of work: the network is trained (and its checkpoint chosen on the validation split) from the
pack; :func:`finalise` then fits the temperature on the real validation images and evaluates on the real test
images, so every shipped number and stored probability comes from the data itself.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medimg.errors import SpecError
from medimg.spec import PreprocessConfig
from medimg.training import data as mdata

__all__ = ["PACK_VERSION", "write_pack", "read_pack", "pack_info", "finalise"]

#: Format version written into every pack.
PACK_VERSION = 1
SPLITS = ("train", "val", "test")


def _encode(img: torch.Tensor, fmt: str, quality: int) -> bytes:
    """(C, H, W) float in [0, 1] -> JPEG/PNG bytes (8-bit, L or RGB)."""
    a = np.rint(img.clamp(0, 1).numpy() * 255.0).astype(np.uint8)
    pil = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
    buf = io.BytesIO()
    if fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "webp":
        pil.save(buf, format="WEBP", quality=quality, method=4)
    else:
        pil.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _decode(data: bytes, in_chans: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im.convert("L" if in_chans == 1 else "RGB"), dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def source_checksum(task_key: str) -> str:
    """sha256 of the task's manifest (image folders) or a note for MedMNIST (its md5 is in the package INFO)."""
    from medimg.training.tasks import get_task, split_fold_key

    task = get_task(split_fold_key(task_key)[0])
    if task.folder:
        return mdata.manifest_checksum(mdata.data_root() / task.folder)
    if task.csv:
        return hashlib.sha256(Path(task.csv).read_bytes()).hexdigest()
    return "medmnist md5 (package INFO)"


def write_pack(task_key: str, config: PreprocessConfig, path: str | Path, fmt: str = "jpeg", quality: int = 90,
               limit: int | None = None) -> dict[str, Any]:
    """Preprocess every split of a task and write them to one pack.

    Parameters
    ----------
    task_key : str
        Key of :data:`medimg.training.tasks.TASKS` (``TASK::fold=K`` too).
    config : PreprocessConfig
        The model's preprocessing (input size, channels, geometry); mean/std are not applied (the pack holds
        [0, 1] images, as :class:`medimg.training.data.SplitArrays`).
    path : path
        Output ``.npz``.
    fmt : {"jpeg", "webp", "png"}
        8-bit JPEG or WebP (lossy; ``quality``; WebP is about half JPEG's size at equal quality) or PNG
        (lossless at 8 bits).
    quality : int
        JPEG/WebP quality, 1-100.
    limit : int, optional
        At most this many images per split (quick checks).

    Returns
    -------
    dict
        The pack's metadata (also stored in it): task, input size, channels, geometry, format, quality, counts,
        labels, source checksum.

    Raises
    ------
    medimg.errors.SpecError
        Unknown format, or an unknown task.
    """
    from medimg.training.tasks import load_task_split

    if fmt not in ("jpeg", "webp", "png"):
        raise SpecError(f"pack format must be 'jpeg', 'webp' or 'png', got {fmt!r}")
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"version": PACK_VERSION, "task": task_key, "input_size": list(config.input_size),
                            "in_chans": config.in_chans, "geometry": config.geometry, "window": config.window,
                            "roi": config.roi, "format": fmt,
                            "quality": quality if fmt != "png" else None, "n": {},
                            "source_checksum": source_checksum(task_key)}
    for split in SPLITS:
        s = load_task_split(task_key, split, config, limit)
        blobs = [_encode(x, fmt, quality) for x in s.x]
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_y"] = s.y.numpy().astype(np.int64)
        arrays[f"{split}_ids"] = np.frombuffer(json.dumps(s.ids).encode(), dtype=np.uint8)
        meta["labels"] = list(s.labels)
        meta["n"][split] = len(s.y)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return meta


def pack_info(path: str | Path, checksum: bool = True) -> dict[str, Any]:
    """The metadata of a pack, plus its file's sha256 (``"sha256"``; not computed with ``checksum=False``).

    Raises
    ------
    medimg.errors.SpecError
        Not a medimg pack, or an unknown version.
    """
    p = Path(path)
    try:
        with np.load(p) as z:
            meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError) as err:
        raise SpecError(f"{p.name} is not a medimg data pack: {err}") from err
    if meta.get("version") != PACK_VERSION:
        raise SpecError(f"{p.name}: pack version {meta.get('version')!r}, this medimg reads {PACK_VERSION}")
    if checksum:
        meta["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return meta


def read_pack(path: str | Path, split: str, config: PreprocessConfig | None = None) -> mdata.SplitArrays:
    """One split of a pack as :class:`medimg.training.data.SplitArrays` (x float32 in [0, 1]).

    Parameters
    ----------
    path : path
    split : {"train", "val", "test"}
    config : PreprocessConfig, optional
        When given, the pack must have been made for its input size, channels, geometry, window and region of
        interest (packs older than the last two count as ``"default"`` and ``"none"``).

    Raises
    ------
    medimg.errors.SpecError
        Not a pack, or made for another input size, channel count, geometry, window or region of interest.
    """
    meta = pack_info(path, checksum=False)
    if config is not None:
        want = {"input_size": list(config.input_size), "in_chans": config.in_chans, "geometry": config.geometry,
                "window": config.window, "roi": config.roi}
        older = {"window": "default", "roi": "none"}  # packs written before these fields existed
        got = {k: meta.get(k, older.get(k)) for k in want}
        if got != want:
            raise SpecError(f"the data pack was made for {got}, the model needs {want}")
    with np.load(path) as z:
        raw, off = z[f"{split}_bytes"].tobytes(), z[f"{split}_offsets"]
        y = torch.from_numpy(z[f"{split}_y"].astype(np.int64))
        ids = json.loads(bytes(z[f"{split}_ids"]).decode())
    images = [_decode(raw[off[i]:off[i + 1]], meta["in_chans"]) for i in range(len(off) - 1)]
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0) if images else torch.zeros(0)
    return mdata.SplitArrays(x, y, tuple(meta["labels"]), ids)


def finalise(spec_path: str | Path, device: str = "auto", limit: int | None = None) -> Any:
    """Finish a model trained elsewhere (from a pack) on the real data: temperature on the real validation
    split, test report on the real test split, data checksum of the real source; rewrites the spec and
    ``<name>.eval.json`` beside the weights (the weights and their sha256 are unchanged). A model of the Bethesda
    classes also stores its screening view (``metrics["screening"]``, :func:`medimg.training.screening.screening_view`).

    Parameters
    ----------
    spec_path : path
        ``<name>.json`` beside ``<name>.safetensors``.
    device : str
    limit : int, optional
        At most this many images per split (quick checks).

    Returns
    -------
    medimg.spec.ModelSpec
        The rewritten spec.

    Raises
    ------
    medimg.errors.SpecError, medimg.errors.WeightsError
    """
    from medimg.models import load_model
    from medimg.predict import batch_logits, choose_device, softmax
    from medimg.screening import has_bethesda_grades
    from medimg.spec import save_spec, spec_task
    from medimg.training.calibration import calibrate_and_report
    from medimg.training.screening import screening_view
    from medimg.training.tasks import load_task_split

    dev = choose_device(device)
    net, spec = load_model(spec_path, device=dev)
    task_key = spec_task(spec)
    splits = {s: load_task_split(task_key, s, spec.preprocess, limit) for s in ("val", "test")}
    spec, report = calibrate_and_report(net, spec, splits["val"], splits["test"], dev)
    training = dict(spec.training)
    training["data_checksum_sha256_manifest"] = source_checksum(task_key)
    training["finalised_on"] = "the real validation and test images (temperature, test metrics)"
    spec = spec.replace(training=training)
    if has_bethesda_grades(list(spec.labels)):  # the dashboard's screening view (NILM vs abnormal) reads it
        val = splits["val"]  # already loaded; the test probabilities are the report's
        p_val = softmax(batch_logits(net, val.x, spec.preprocess, dev), spec.temperature)
        sc = screening_view(val.y.numpy(), p_val, report.y_true, report.probs, list(spec.labels))
        spec = spec.replace(metrics={**spec.metrics, "screening": sc})
    out = Path(spec_path)
    save_spec(spec, out)
    report.save(out.with_name(f"{spec.name}.eval.json"))
    return spec
