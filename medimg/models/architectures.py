"""Architecture registry and safe weights I/O (safetensors only, sha256 checked, strict loading).

A tiny public API over private machinery, as timm does: :func:`create_model`, :func:`list_models`,
:func:`save_weights`, :func:`load_model`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from medimg.errors import SpecError, WeightsError
from medimg.spec import ModelSpec, load_spec, save_spec

__all__ = ["create_model", "list_models", "save_weights", "load_model", "load_state_dict_file", "sha256_bytes",
           "SmallCNN", "MAX_WEIGHTS_BYTES"]

#: Largest weights file read (bytes); shipped files are a few MB.
MAX_WEIGHTS_BYTES = 512 * 1024 * 1024
#: Largest safetensors JSON header accepted (bytes).
MAX_HEADER_BYTES = 4 * 1024 * 1024

_REGISTRY: dict[str, Callable[[int, int], nn.Module]] = {}


def _register(name: str) -> Callable[[Callable[[int, int], nn.Module]], Callable[[int, int], nn.Module]]:
    def deco(fn: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return deco


class SmallCNN(nn.Module):
    """The classic small CNN for teaching: (conv -> ReLU -> max-pool) x 3 -> fully connected x 2.

    Parameters
    ----------
    in_chans : int
        Input channels C.
    num_classes : int
        Output logits K.
    width : int
        Channels of the first convolution (doubled at each block).

    Notes
    -----
    Input (N, C, H, W) float32, any H, W >= 8 (global average pooling before the classifier).
    Output (N, K) logits. Grad-CAM target layer: ``features.conv3``.
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(in_chans, w, 3, padding=1))
        self.features.add_module("relu1", nn.ReLU())
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("conv2", nn.Conv2d(w, 2 * w, 3, padding=1))
        self.features.add_module("relu2", nn.ReLU())
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.features.add_module("conv3", nn.Conv2d(2 * w, 4 * w, 3, padding=1))
        self.features.add_module("relu3", nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * w, 4 * w), nn.ReLU(), nn.Dropout(0.2),
                                        nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 4w, H/4, W/4)
        x = self.pool(x)  # (N, 4w, 1, 1)
        return self.classifier(x)  # (N, K)


@_register("smallcnn")
def _smallcnn(in_chans: int, num_classes: int) -> nn.Module:
    return SmallCNN(in_chans, num_classes)


def _adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    if conv.in_channels == in_chans:
        return conv
    return nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


@_register("resnet18")
def _resnet18(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    m.conv1 = _adapt_first_conv(m.conv1, in_chans)
    return m


@_register("resnet10")
def _resnet10(in_chans: int, num_classes: int) -> nn.Module:
    """ResNet-10: torchvision's ResNet with one BasicBlock per stage (4.9 M parameters, ~55 % of ResNet-18's
    compute), for small data sets."""
    m = torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_classes)
    m.conv1 = _adapt_first_conv(m.conv1, in_chans)
    return m


@_register("resnet10_small")
def _resnet10_small(in_chans: int, num_classes: int) -> nn.Module:
    """ResNet-10 for 28-64 px inputs: 3x3 stride-1 stem and no max-pool (as the CIFAR ResNets of He et al.
    2016, section 4.2), widths 32-64-128-256 (1.2 M parameters). A 28 px input reaches layer4 at 4 x 4."""
    m = torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_classes,
                                  width_per_group=64)
    # rebuild narrower: torchvision's ResNet fixes widths at 64..512, so construct stages by hand
    m.inplanes = 32
    m.conv1 = nn.Conv2d(in_chans, 32, 3, 1, 1, bias=False)
    m.bn1 = nn.BatchNorm2d(32)
    m.maxpool = nn.Identity()
    block = torchvision.models.resnet.BasicBlock
    m.layer1 = m._make_layer(block, 32, 1)
    m.layer2 = m._make_layer(block, 64, 1, stride=2)
    m.layer3 = m._make_layer(block, 128, 1, stride=2)
    m.layer4 = m._make_layer(block, 256, 1, stride=2)
    m.fc = nn.Linear(256, num_classes)
    for mod in m.modules():  # torchvision's initialisation for the replaced layers
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    return m


@_register("resnet34")
def _resnet34(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.resnet34(weights=None, num_classes=num_classes)
    m.conv1 = _adapt_first_conv(m.conv1, in_chans)
    return m


@_register("densenet121")
def _densenet121(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.densenet121(weights=None, num_classes=num_classes)
    m.features.conv0 = _adapt_first_conv(m.features.conv0, in_chans)
    return m


@_register("efficientnet_b0")
def _efficientnet_b0(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


@_register("mobilenet_v3_small")
def _mobilenet_v3_small(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


@_register("convnext_tiny")
def _convnext_tiny(in_chans: int, num_classes: int) -> nn.Module:
    """ConvNeXt-T (Liu et al. 2022, "A ConvNet for the 2020s"), 28 M parameters; 4x4 stride-4 patchify stem
    adapted to ``in_chans``. Best with ImageNet pretraining and >= 128 px inputs (layer features.7 is H/32)."""
    m = torchvision.models.convnext_tiny(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


#: Default Grad-CAM target layer per architecture (last convolutional block).
DEFAULT_CAM_LAYER = {
    "smallcnn": "features.conv3",
    "resnet10": "layer4",
    "resnet10_small": "layer4",
    "resnet18": "layer4",
    "resnet34": "layer4",
    "densenet121": "features.norm5",
    "efficientnet_b0": "features.8",
    "mobilenet_v3_small": "features.12",
    "convnext_tiny": "features.7",
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    """Build an untrained network from the registry.

    Parameters
    ----------
    name : str
        One of :func:`list_models` (e.g. ``"smallcnn"``, ``"resnet18"``).
    in_chans : int
        Input channels (1 for grayscale radiographs; the first convolution is adapted).
    num_classes : int
        Number of output logits.

    Returns
    -------
    torch.nn.Module
        Takes (N, in_chans, H, W) float32, returns (N, num_classes) logits; in train mode.

    Raises
    ------
    SpecError
        Unknown architecture name.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError as err:
        raise SpecError(f"Unknown architecture {name!r}; known: {', '.join(list_models())}.") from err
    return factory(in_chans, num_classes)


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
