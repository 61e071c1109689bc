"""Architecture registry and safetensors round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medimg.errors import SpecError
from medimg.models import DEFAULT_CAM_LAYER, create_model, list_models, load_model, save_weights
from medimg.spec import ModelSpec, PreprocessConfig


def test_registry_lists_expected_models() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {"smallcnn", "resnet18", "resnet34", "densenet121", "efficientnet_b0", "mobilenet_v3_small",
            "convnext_tiny", "resnet10", "resnet10_small"} <= set(names)
    assert set(names) <= set(DEFAULT_CAM_LAYER)
    with pytest.raises(SpecError, match="Unknown architecture"):
        create_model("alexnet-9000")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_chans", [1, 3])
def test_shapes_at_two_sizes(name: str, in_chans: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_chans, 3)
    assert model.training  # documented: returned in train mode
    model.eval()
    with torch.inference_mode():
        for side in (64, 128):
            out = model(torch.randn(2, in_chans, side, side))
            assert out.shape == (2, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 2 if in_chans != 2 else 4, 64, 64))  # wrong channel count is not silently used


@pytest.mark.parametrize("name", list_models())
def test_default_cam_layer_resolves(name: str) -> None:
    model = create_model(name, 1, 2)
    layer = model.get_submodule(DEFAULT_CAM_LAYER[name])
    assert isinstance(layer, torch.nn.Module)
    # the layer is on the path of the forward pass: its output changes with the input
    seen = []
    h = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        with torch.inference_mode():
            model.eval()(torch.randn(1, 1, 64, 64))
    finally:
        h.remove()
    assert len(seen) == 1 and len(seen[0]) == 4  # a spatial (N, C, H, W) map, as CAM needs


def _spec(arch: str) -> ModelSpec:
    return ModelSpec(name=f"rt_{arch}", title="t", architecture=arch, labels=("a", "b"),
                     preprocess=PreprocessConfig(input_size=(64, 64)))


@pytest.mark.parametrize("arch", ["smallcnn", "resnet18", "mobilenet_v3_small"])
def test_save_load_round_trip_bit_identical(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model(arch, 1, 2).eval()
    # non-trivial BatchNorm statistics, so buffers are exercised too
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    spec = save_weights(model, _spec(arch), tmp_path)
    assert len(spec.sha256) == 64
    loaded, spec2 = load_model(tmp_path / f"rt_{arch}.json")
    assert spec2 == spec and not loaded.training
    x = torch.randn(3, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_fp16_storage_round_trip_is_close(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = create_model("resnet18", 1, 2).eval()
    spec = save_weights(model, _spec("resnet18"), tmp_path / "half", half=True)
    full = save_weights(model, _spec("resnet18"), tmp_path / "full")
    size_half = (tmp_path / "half" / "rt_resnet18.safetensors").stat().st_size
    size_full = (tmp_path / "full" / "rt_resnet18.safetensors").stat().st_size
    assert size_half < 0.6 * size_full and spec.sha256 != full.sha256
    loaded, _ = load_model(tmp_path / "half" / "rt_resnet18.json")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        ref, out = model(x), loaded(x)
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    assert torch.equal(torch.softmax(out, 1).argmax(1), torch.softmax(ref, 1).argmax(1))
    # integer buffers (BatchNorm num_batches_tracked) are not converted
    sd = loaded.state_dict()
    assert sd["bn1.num_batches_tracked"].dtype == torch.int64


def test_load_model_device_and_eval(tiny_spec_path: Path) -> None:
    model, spec = load_model(tiny_spec_path, device="cpu")
    assert next(model.parameters()).device.type == "cpu" and not model.training
    assert spec.cam_layer and model.get_submodule(spec.cam_layer) is not None
