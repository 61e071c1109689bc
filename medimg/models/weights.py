"""Safe weights I/O: safetensors only, sha256 checked before parsing, strict loading (RELIABILITY.md, "Weights").

Nothing is unpickled: a weights file is bytes with a bounded JSON header, checked against the sha256 in
its spec before anything is parsed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from medimg.errors import SpecError, WeightsError
from medimg.models.architectures import create_model
from medimg.spec import ModelSpec, load_spec, save_spec

__all__ = ["save_weights", "load_model", "load_state_dict_file", "sha256_bytes", "MAX_WEIGHTS_BYTES",
           "MAX_HEADER_BYTES"]

#: Largest weights file read (bytes); shipped files are a few MB.
MAX_WEIGHTS_BYTES = 512 * 1024 * 1024
#: Largest safetensors JSON header accepted (bytes).
MAX_HEADER_BYTES = 4 * 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _check_header(data: bytes, label: str) -> None:
    """Validate the safetensors framing before the library parses it (bounded memory, no surprises)."""
    if len(data) < 8:
        raise WeightsError(f"{label} is not a safetensors file (too short).")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise WeightsError(f"{label} is not a valid safetensors file (header of {n:,} bytes declared).")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{label} is not a valid safetensors file (header is not JSON).") from err
    if not isinstance(header, dict):
        raise WeightsError(f"{label} is not a valid safetensors file.")


def load_state_dict_file(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file into a CPU state dict, checking its sha256 first.

    Parameters
    ----------
    path : path
        Must end in ``.safetensors``.
    sha256 : str, optional
        Expected hex digest; when given, a mismatch raises before anything is parsed (fail closed).

    Raises
    ------
    WeightsError
        Wrong suffix, missing, too large, hash mismatch, or not a valid safetensors file (e.g. a pickle).
    """
    p = Path(path)
    label = f"Weights file {p.name}"
    if p.suffix != ".safetensors":
        raise WeightsError(f"{label}: only .safetensors weights are loaded.")
    try:
        size = p.stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            raise WeightsError(f"{label} is larger than {MAX_WEIGHTS_BYTES // 2**20} MB.")
        data = p.read_bytes()
    except FileNotFoundError as err:
        raise WeightsError(f"{label} is missing.") from err
    except OSError as err:
        raise WeightsError(f"{label} cannot be read.") from err
    if sha256 is not None and sha256_bytes(data) != sha256.lower():
        raise WeightsError(f"{label} does not match the sha256 in its specification; it was changed or damaged.")
    _check_header(data, label)
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as err:
        raise WeightsError(f"{label} is not a valid safetensors file.") from err


def save_weights(model: nn.Module, spec: ModelSpec, directory: str | Path, half: bool = False) -> ModelSpec:
    """Write ``<spec.name>.safetensors`` and ``<spec.name>.json`` with the file's sha256 in the spec.

    Parameters
    ----------
    model : torch.nn.Module
        Trained network (any device); its state dict is copied to the CPU.
    spec : ModelSpec
        The spec to store; ``sha256`` is filled in.
    directory : path
        Output folder (created).
    half : bool
        Store floating tensors as float16 (halves the size; loaded back as float32).

    Returns
    -------
    ModelSpec
        The spec as written (with sha256).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        if half and t.is_floating_point():
            t = t.half()
        state[k] = t
    data = st_save(state, metadata={"architecture": spec.architecture, "name": spec.name})
    (out / f"{spec.name}.safetensors").write_bytes(data)
    spec = spec.replace(sha256=sha256_bytes(data))
    save_spec(spec, out / f"{spec.name}.json")
    return spec


def load_model(spec_or_path: ModelSpec | str | Path, weights_dir: str | Path | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Load a network from its spec and ``.safetensors`` weights, failing closed.

    Parameters
    ----------
    spec_or_path : ModelSpec or path
        The spec, or the path of ``<name>.json`` (the weights are ``<name>.safetensors`` beside it).
    weights_dir : path, optional
        Folder of the weights when a ModelSpec object is given.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    (torch.nn.Module, ModelSpec)
        The model in eval mode, and its spec.

    Raises
    ------
    SpecError
        Spec missing or invalid, or empty sha256.
    WeightsError
        File missing, sha256 mismatch, not safetensors, or keys/shapes that do not fit the architecture
        (``load_state_dict(strict=True)``).
    """
    if isinstance(spec_or_path, ModelSpec):
        spec = spec_or_path
        folder = Path(weights_dir) if weights_dir is not None else Path("weights")
    else:
        spec = load_spec(spec_or_path)
        folder = Path(spec_or_path).parent
    if not spec.sha256:
        raise SpecError(f"The specification of {spec.name} has no sha256; weights are loaded only when it does.")
    state = load_state_dict_file(folder / f"{spec.name}.safetensors", sha256=spec.sha256)
    model = create_model(spec.architecture, spec.preprocess.in_chans, spec.num_classes)
    ref = model.state_dict()
    state = {k: (v.to(ref[k].dtype) if k in ref and v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(
            f"Weights file {spec.name}.safetensors does not fit architecture {spec.architecture!r} "
            "(missing, unexpected or mis-shaped tensors)."
        ) from err
    model.eval()
    return model.to(device), spec
