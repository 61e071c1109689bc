"""The architecture registry: one :class:`Architecture` descriptor per network.

A descriptor holds everything the rest of medimg needs to know about a network, in one place: its factory, the
Grad-CAM target layer, the layer at the end of each resolution stage (per-stage CAMs for teaching, the
out-of-distribution gate's early layers), and the classifier head's input (the penultimate features). Feature
taps are torchvision's :func:`~torchvision.models.feature_extraction.create_feature_extractor` over the model
itself: the extractor calls the model's own submodules (it shares, never copies, the weights), registers no hooks
and keeps no state, so it is safe on a model shared by concurrent sessions.

A tiny public API over private machinery, as timm does: :func:`create_model`, :func:`list_models`,
:func:`get_architecture`, :func:`feature_extractor`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from medimg.errors import SpecError

__all__ = ["Architecture", "register", "get_architecture", "list_models", "create_model", "feature_extractor",
           "SmallCNN", "DEFAULT_CAM_LAYER", "PENULTIMATE"]

#: Output name of the penultimate features in :func:`feature_extractor`'s result.
PENULTIMATE = "penultimate"


@dataclass(frozen=True)
class Architecture:
    """What medimg knows about one registered network.

    Attributes
    ----------
    name : str
        Registry name (``--arch``; ``ModelSpec.architecture``).
    factory : callable ``(in_chans, num_classes) -> nn.Module``
        Builds the untrained network; it takes (N, in_chans, H, W) float32 and returns (N, num_classes) logits.
    cam_layer : str
        Default Grad-CAM target layer (dotted module path): the last convolutional block.
    stage_layers : tuple of str
        Module paths at the end of the resolution stages before ``cam_layer`` (coarsening with depth).
    penultimate_node : str
        FX node whose output is the classifier head's input, (N, D) after global pooling.
    penultimate_description : str
        How that layer is named to users (e.g. in the gate's reasons).
    """

    name: str
    factory: Callable[[int, int], nn.Module]
    cam_layer: str
    stage_layers: tuple[str, ...]
    penultimate_node: str
    penultimate_description: str

    def create(self, in_chans: int = 1, num_classes: int = 2) -> nn.Module:
        """Build the untrained network (train mode)."""
        return self.factory(in_chans, num_classes)


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` to the registry.

    Raises
    ------
    SpecError
        A different architecture is already registered under ``arch.name`` (names are unique: a spec names
        exactly one network).
    """
    if arch.name in _REGISTRY and _REGISTRY[arch.name] != arch:
        raise SpecError(f"An architecture named {arch.name!r} is already registered.")
    _REGISTRY[arch.name] = arch
    return arch


class SmallCNN(nn.Module):
    """The classic small CNN for teaching: (conv -> ReLU -> max-pool) x depth -> fully connected x 2.

    Parameters
    ----------
    in_chans : int
        Input channels C.
    num_classes : int
        Output logits K.
    width : int
        Channels of the first convolution (doubled at each block), 4-64.
    depth : int
        Convolutional blocks, 2 or 3 (a 28 px input reaches 7 x 7 or 3 x 3 cells).
    kernel_size : int
        Odd convolution kernel side, 3-7 ("same" padding).

    Notes
    -----
    Input (N, C, H, W) float32, H, W >= 2**depth. The last block has no pooling of its own: global average
    pooling feeds the classifier. Output (N, K) logits. Grad-CAM target layer: ``features.conv<depth>``.
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 2, width: int = 16, depth: int = 3,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if depth not in (2, 3) or not 4 <= width <= 64 or kernel_size not in (3, 5, 7):
            raise SpecError(f"SmallCNN takes depth 2-3, width 4-64 and kernel 3, 5 or 7; got depth {depth}, "
                            f"width {width}, kernel {kernel_size}.")
        self.depth, self.width, self.kernel_size = depth, width, kernel_size
        self.features = nn.Sequential()
        c_in, c_out = in_chans, width
        for b in range(1, depth + 1):
            self.features.add_module(f"conv{b}", nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2))
            self.features.add_module(f"relu{b}", nn.ReLU())
            if b < depth:
                self.features.add_module(f"pool{b}", nn.MaxPool2d(2))
            c_in, c_out = c_out, 2 * c_out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in, c_in), nn.ReLU(), nn.Dropout(0.2),
                                        nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, w * 2**(depth-1), H / 2**(depth-1), W / 2**(depth-1))
        x = self.pool(x)  # (N, w * 2**(depth-1), 1, 1)
        return self.classifier(x)  # (N, K)


def _smallcnn(in_chans: int, num_classes: int) -> nn.Module:
    return SmallCNN(in_chans, num_classes)


def _adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    if conv.in_channels == in_chans:
        return conv
    return nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


def _resnet18(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    m.conv1 = _adapt_first_conv(m.conv1, in_chans)
    return m


def _resnet10(in_chans: int, num_classes: int) -> nn.Module:
    """ResNet-10: torchvision's ResNet with one BasicBlock per stage (4.9 M parameters, ~55 % of ResNet-18's
    compute), for small data sets."""
    m = torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_classes)
    m.conv1 = _adapt_first_conv(m.conv1, in_chans)
    return m


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


def _resnet34(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.resnet34(weights=None, num_classes=num_classes)
    m.conv1 = _adapt_first_conv(m.conv1, in_chans)
    return m


def _densenet121(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.densenet121(weights=None, num_classes=num_classes)
    m.features.conv0 = _adapt_first_conv(m.features.conv0, in_chans)
    return m


def _efficientnet_b0(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


def _mobilenet_v3_small(in_chans: int, num_classes: int) -> nn.Module:
    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


def _mobilenet_v2(in_chans: int, num_classes: int) -> nn.Module:
    """MobileNetV2 (Sandler et al., CVPR 2018), 2.2 M parameters + head; 3x3 stride-2 stem adapted to ``in_chans``.
    Its ImageNet-1k weights (torchvision ``MobileNet_V2_Weights.IMAGENET1K_V1``) load through
    :func:`medimg.models.pretrained.load_pretrained`; features.18 is H/32 (7 x 7 at 224 px), features.13 H/16."""
    m = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


def _convnext_tiny(in_chans: int, num_classes: int) -> nn.Module:
    """ConvNeXt-T (Liu et al. 2022, "A ConvNet for the 2020s"), 28 M parameters; 4x4 stride-4 patchify stem
    adapted to ``in_chans``. Best with ImageNet pretraining and >= 128 px inputs (layer features.7 is H/32)."""
    m = torchvision.models.convnext_tiny(weights=None, num_classes=num_classes)
    m.features[0][0] = _adapt_first_conv(m.features[0][0], in_chans)
    return m


_RESNET_STAGES = ("layer1", "layer2", "layer3")
_POOLED = "avgpool (global average of {})"
for _arch in (
    Architecture("smallcnn", _smallcnn, "features.conv3", ("features.relu1", "features.relu2"), "classifier.0",
                 "pool (global average of features.relu3)"),
    Architecture("resnet10", _resnet10, "layer4", _RESNET_STAGES, "flatten", _POOLED.format("layer4")),
    Architecture("resnet10_small", _resnet10_small, "layer4", _RESNET_STAGES, "flatten", _POOLED.format("layer4")),
    Architecture("resnet18", _resnet18, "layer4", _RESNET_STAGES, "flatten", _POOLED.format("layer4")),
    Architecture("resnet34", _resnet34, "layer4", _RESNET_STAGES, "flatten", _POOLED.format("layer4")),
    Architecture("densenet121", _densenet121, "features.norm5",
                 ("features.denseblock1", "features.denseblock2", "features.denseblock3"), "flatten",
                 "global average of relu(features.norm5)"),
    Architecture("efficientnet_b0", _efficientnet_b0, "features.8", ("features.2", "features.3", "features.5"),
                 "flatten", _POOLED.format("features.8")),
    Architecture("mobilenet_v3_small", _mobilenet_v3_small, "features.12", ("features.1", "features.3", "features.8"),
                 "flatten", _POOLED.format("features.12")),
    Architecture("mobilenet_v2", _mobilenet_v2, "features.18", ("features.3", "features.6", "features.13"),
                 "flatten", _POOLED.format("features.18")),
    Architecture("convnext_tiny", _convnext_tiny, "features.7", ("features.1", "features.3", "features.5"),
                 "classifier.1", "classifier.0 (LayerNorm of the global average of features.7)"),
):
    register(_arch)

#: Default Grad-CAM target layer per architecture (read from the descriptors).
DEFAULT_CAM_LAYER: dict[str, str] = {name: a.cam_layer for name, a in _REGISTRY.items()}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def get_architecture(name: str) -> Architecture:
    """The registry's descriptor of ``name``.

    Raises
    ------
    SpecError
        Unknown architecture name.
    """
    try:
        return _REGISTRY[name]
    except KeyError as err:
        raise SpecError(f"Unknown architecture {name!r}; known: {', '.join(list_models())}.") from err


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
    return get_architecture(name).create(in_chans, num_classes)


def feature_extractor(model: nn.Module, architecture: str, stages: bool = True) -> nn.Module:
    """Feature taps of ``model``: its stage outputs and penultimate features, in one forward pass.

    Built with torchvision's ``create_feature_extractor`` (FX): the returned module calls ``model``'s own
    submodules, so it shares every parameter and buffer (nothing is copied), registers no hooks and keeps no
    state between calls.

    Parameters
    ----------
    model : torch.nn.Module
        Built by :func:`create_model` for ``architecture`` (any weights).
    architecture : str
    stages : bool
        False: only the penultimate features.

    Returns
    -------
    torch.nn.Module
        In eval mode. Called on (N, C, H, W) float32 normalised input, returns a dict: one entry per
        ``stage_layers`` name, (N, C_l, H_l, W_l), when ``stages``; then :data:`PENULTIMATE`, (N, D).

    Raises
    ------
    SpecError
        Unknown architecture.
    """
    arch = get_architecture(architecture)
    nodes = {name: name for name in arch.stage_layers} if stages else {}
    nodes[arch.penultimate_node] = PENULTIMATE
    extractor = create_feature_extractor(model, return_nodes=nodes)
    return extractor.eval()
