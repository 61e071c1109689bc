"""Lesion-mask supervision (medimg.training.masks): masks placed like the image, moved with it by augmentation,
the auxiliary loss, and a tiny BUSI run whose shipped network carries nothing of the auxiliary head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medimg.catalog import read_manifest
from medimg.errors import SpecError
from medimg.explain.localisation import mask_to_input
from medimg.io import load_image
from medimg.spec import PreprocessConfig
from medimg.training import data as mdata
from medimg.training.masks import FeatureTap, MaskHead, load_masks, mask_loss


def _l_shape(size: int = 64) -> torch.Tensor:
    """An asymmetric L-shaped blob (1 inside), so a wrong flip or turn of the mask shows."""
    m = torch.zeros(1, size, size)
    m[0, 10:50, 12:22] = 1.0
    m[0, 40:50, 12:44] = 1.0
    return m


@pytest.mark.parametrize("modality", ["ultrasound", "microscopy", "mri"])
def test_the_mask_takes_the_images_geometric_augmentation_and_none_of_its_intensity(modality: str) -> None:
    m = _l_shape()
    x = (0.1 + 0.8 * m).expand(3 if modality == "microscopy" else 1, -1, -1).clone()
    pp = PreprocessConfig(input_size=(64, 64), in_chans=x.shape[0], mean=(0.0,) * x.shape[0],
                          std=(1.0,) * x.shape[0])
    arrays = mdata.SplitArrays(x[None].repeat(8, 1, 1, 1), torch.zeros(8, dtype=torch.int64), ("a",),
                               [str(i) for i in range(8)], masks=m[None].repeat(8, 1, 1, 1))
    plain = mdata.SplitArrays(arrays.x, arrays.y, arrays.labels, arrays.ids)
    with_masks = mdata.AugmentedDataset(arrays, pp, mdata.augmentation(modality, 64), seed=3)
    without = mdata.AugmentedDataset(plain, pp, mdata.augmentation(modality, 64), seed=3)
    moved = 0
    for epoch in range(3):
        with_masks.set_epoch(epoch)
        without.set_epoch(epoch)
        for i in range(8):
            xa, _, ma = with_masks[i]
            xb, _ = without[i]
            # the image's augmentation is the same draw with or without a mask travelling along
            assert torch.equal(xa, xb)
            assert set(ma.unique().tolist()) <= {0.0, 1.0}  # nearest-neighbour: still a binary mask
            bright = xa.mean(0) > 0.5 * (xa.max() + xa.min())
            inside = ma[0] > 0.5
            iou = (bright & inside).sum() / (bright | inside).sum()
            assert iou > 0.8, f"mask and image disagree after augmentation (IoU {iou:.2f})"
            moved += int(not torch.equal(ma, m))
    assert moved > 0  # the augmentation did move the mask


def test_busi_masks_are_placed_by_the_models_preprocessing(shared_data: Path) -> None:
    folder = shared_data / "busi"
    rows = read_manifest(folder)
    pick = [next(r for r in rows if r["label"] == c) for c in ("normal", "benign", "malignant")]
    pp = PreprocessConfig(input_size=(96, 96), in_chans=1, geometry="pad")
    masks = load_masks(folder, [r["path"] for r in pick], pp)
    assert masks.shape == (3, 1, 96, 96) and masks.dtype == torch.float32
    assert masks[0].sum() == 0  # a normal image has no lesion
    for k in (1, 2):
        expected = mask_to_input(load_image(folder / pick[k]["mask"]).pixels, pp)
        assert masks[k].sum() > 0 and np.array_equal(masks[k, 0].numpy() > 0.5, expected)


def test_a_task_without_masks_and_an_unknown_id_are_clear_errors(shared_data: Path) -> None:
    pp = PreprocessConfig(input_size=(32, 32), in_chans=1)
    blood = shared_data / "pbc-blood"
    with pytest.raises(SpecError, match="no 'mask' column"):
        load_masks(blood, [read_manifest(blood)[0]["path"]], pp)
    with pytest.raises(SpecError, match="not in"):
        load_masks(shared_data / "busi", ["images/benign/no such image.png"], pp)


def test_mask_loss_is_lowest_at_the_mask_and_averages_it_onto_the_grid() -> None:
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, :4, :4] = 1.0  # top-left quarter: one whole cell of a 2 x 2 grid
    masks[1, 0, :4, :2] = 1.0  # half of that cell
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.5, 0.0], [0.0, 0.0]]]])
    exact = torch.logit(target.clamp(1e-4, 1 - 1e-4))
    at_mask = mask_loss(exact, masks)
    assert at_mask.shape == (2,)
    assert torch.all(at_mask < mask_loss(torch.zeros_like(exact), masks))
    assert torch.all(at_mask < mask_loss(-exact, masks))
    # the minimum over the logits is at the area-averaged target (BCE's minimiser is the target itself)
    z = exact[1].clone().requires_grad_(True)
    mask_loss(z[None], masks[1:]).sum().backward()
    assert torch.allclose(z.grad, torch.zeros_like(z.grad), atol=1e-3)


def test_the_feature_tap_sees_the_explained_layer_and_leaves_no_trace() -> None:
    from medimg.models import create_model, get_architecture

    net = create_model("smallcnn", 1, 2).eval()
    layer = get_architecture("smallcnn").cam_layer
    tap = FeatureTap(net, layer)
    with torch.no_grad():
        out = net(torch.rand(2, 1, 32, 32))
    assert tap.output is not None and tap.output.shape[0] == 2
    head = MaskHead(tap.output.shape[1])
    assert head(tap.output).shape == (2, 1, *tap.output.shape[-2:])
    tap.remove()
    assert all(not m._forward_hooks for m in net.modules())
    assert out.shape == (2, 2)
    with pytest.raises(SpecError, match="no layer"):
        FeatureTap(net, "features.nope")


@pytest.mark.usefixtures("fast_training")
def test_a_tiny_mask_guided_busi_run_records_it_and_ships_the_plain_network(tmp_path: Path,
                                                                          shared_data: Path) -> None:
    from medimg.cli import main

    base = ["train", "--task", "busi", "--arch", "smallcnn", "--size", "32", "--epochs", "1", "--batch-size",
            "8", "--limit", "16", "--out", str(tmp_path), "--device", "cpu", "--threads", "1", "--no-gate",
            "--ema-decay", "0"]
    assert main([*base, "--name", "plain"]) == 0
    assert main([*base, "--name", "guided", "--mask-weight", "0.5"]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    guided = json.loads((tmp_path / "guided.json").read_text())
    sup = guided["training"]["mask_supervision"]
    assert sup["layer"] == plain["cam_layer"] and sup["weight"] == 0.5 and len(sup["grid"]) == 2
    assert plain["training"]["mask_supervision"] is None
    assert "lesion-mask-guided" in guided["title"] and "lesion-mask-guided" not in plain["title"]
    # the shipped file is the plain classifier: same tensors, no auxiliary head
    a = load_file(str(tmp_path / "plain.safetensors"))
    b = load_file(str(tmp_path / "guided.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert not (tmp_path / "guided.ckpt.safetensors").exists()
    # a task without masks is a clear error, not a traceback
    assert main([*base, "--task", "pbc-blood", "--name", "bad", "--mask-weight", "0.5"]) != 0


class _Interrupt(Exception):
    pass


@pytest.mark.usefixtures("fast_training")
def test_an_interrupted_mask_guided_run_resumes_with_its_head(tmp_path: Path, shared_data: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.training import loop
    from medimg.training.config import TrainConfig

    cfg = TrainConfig(task="busi", arch="smallcnn", input_size=32, epochs=2, batch_size=8, limit=16,
                      out=str(tmp_path), name="guided", device="cpu", num_threads=1, gate=False, mask_weight=1.0)
    real_save, real_load = loop._save_checkpoint, loop._load_checkpoint
    saved: dict[str, torch.Tensor] = {}

    def save_then_die(*a, **k):  # noqa: ANN002, ANN003, ANN202
        real_save(*a, **k)
        saved.update({n: v.clone() for n, v in a[7].state_dict().items()})  # (path, net, opt, sched, best, meta, ema, aux)
        raise _Interrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    with pytest.raises(_Interrupt):
        loop.train(cfg)
    ckpt = load_file(str(tmp_path / "guided.ckpt.safetensors"))
    assert {k for k in ckpt if k.startswith("aux.")} == {"aux.conv.weight", "aux.conv.bias"}
    restored: dict[str, torch.Tensor] = {}

    def load_and_keep(*a, **k):  # noqa: ANN002, ANN003, ANN202
        out = real_load(*a, **k)
        restored.update({n: v.clone() for n, v in a[5].state_dict().items()})  # (path, net, opt, sched, ema, aux)
        return out

    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    monkeypatch.setattr(loop, "_load_checkpoint", load_and_keep)
    spec = loop.train(cfg)
    assert restored.keys() == saved.keys() and all(torch.equal(restored[k], saved[k]) for k in saved)
    assert spec.training["epochs_run"] == 2 and spec.training["mask_supervision"]["weight"] == 1.0
