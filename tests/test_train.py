"""Training: a tiny real run on shared chest X-rays, resume from a checkpoint, temperature scaling."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.evaluate import EvalReport
from medimg.models import load_model
from medimg.spec import load_spec
from medimg.training import loop as mtrain
from medimg.training.calibration import fit_temperature
from medimg.training.config import TrainConfig
from medimg.training.loop import train

pytestmark = pytest.mark.usefixtures("fast_training")


def _cfg(out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(task="kermany-cxr", arch="smallcnn", input_size=32, epochs=epochs, batch_size=8, limit=24,
                       out=str(out), name="tiny_run", device="cpu", num_threads=1, patience=5, gate=False)


class _Interrupt(Exception):
    pass


def test_tiny_training_run_interrupted_and_resumed(tmp_path: Path, shared_data: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # run 1: killed right after the epoch-1 checkpoint is written
    real_save = mtrain._save_checkpoint

    def save_then_die(*a, **k):  # noqa: ANN002, ANN003, ANN202
        real_save(*a, **k)
        raise _Interrupt

    monkeypatch.setattr(mtrain, "_save_checkpoint", save_then_die)
    with pytest.raises(_Interrupt):
        train(_cfg(tmp_path, 2))
    ckpt = tmp_path / "tiny_run.ckpt.safetensors"
    assert ckpt.exists() and not (tmp_path / "tiny_run.safetensors").exists()
    first = json.loads(ckpt.with_suffix(".json").read_text())["history"]
    assert [r["epoch"] for r in first] == [1]

    # run 2: the same command resumes at epoch 2
    monkeypatch.setattr(mtrain, "_save_checkpoint", real_save)
    with caplog.at_level(logging.INFO, logger="medimg.training.loop"):
        spec = train(_cfg(tmp_path, 2))
    assert "resumed from epoch 1" in caplog.text
    history = json.loads((tmp_path / "tiny_run.log.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0] == first[0]  # epoch 1 was not re-run
    assert all(np.isfinite(r["train_loss"]) for r in history)

    # outputs: weights + spec + eval report + log; checkpoint removed
    w = tmp_path / "tiny_run.safetensors"
    assert w.exists() and (tmp_path / "tiny_run.json").exists() and (tmp_path / "tiny_run.eval.json").exists()
    assert not ckpt.exists() and not ckpt.with_suffix(".json").exists()
    assert spec.sha256 == hashlib.sha256(w.read_bytes()).hexdigest()
    on_disk = load_spec(tmp_path / "tiny_run.json")
    def norm(s):  # noqa: ANN001, ANN202 - the same, up to tuples becoming JSON lists
        return json.loads(json.dumps(s.to_dict()))

    assert norm(spec) == norm(on_disk)
    assert on_disk.temperature > 0 and on_disk.temperature == spec.temperature
    assert on_disk.labels == ("normal", "pneumonia") and on_disk.positive_label == 1
    assert on_disk.preprocess.input_size == (32, 32) and on_disk.cam_layer == "features.conv3"
    assert on_disk.training["epochs_run"] == 2 and on_disk.training["n"] == {"train": 24, "val": 24, "test": 24}
    assert 0.0 <= on_disk.metrics["test"]["accuracy"] <= 1.0
    report = EvalReport.load(tmp_path / "tiny_run.eval.json")
    assert report.probs.shape == (24, 2) and len(report.ids) == 24
    assert set(report.y_true.tolist()) == {0, 1}  # the limit samples both classes
    # the written model loads and reproduces the report's probabilities
    model, _ = load_model(tmp_path / "tiny_run.json")
    from medimg.predict import Predictor, softmax

    pred = Predictor(model, on_disk, "cpu")
    assert pred.model is model and np.isfinite(softmax(np.zeros((1, 2)))).all()
    # float16 storage, and the report was computed from exactly the stored (rounded) weights
    from safetensors import safe_open

    with safe_open(str(w), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} <= {torch.float16, torch.int64}
    from medimg.predict import batch_logits
    from medimg.training.tasks import load_task_split

    test = load_task_split("kermany-cxr", "test", on_disk.preprocess, limit=24)
    again = softmax(batch_logits(model, test.x, on_disk.preprocess, torch.device("cpu")), on_disk.temperature)
    np.testing.assert_allclose(again, report.probs, atol=2e-6)
    assert on_disk.tta == ("identity", "zoom_in", "zoom_out", "shift_left", "shift_right", "shift_up", "shift_down")


def test_train_on_a_csv_labelled_folder(tmp_path: Path) -> None:
    """``--task csv:<labels.csv>::patient=<col>``: a user's folder, patient-grouped splits, no shared data."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["path,label,patient"]
    for i in range(60):
        label = ("bright", "dark")[i % 2]
        base = 170 if label == "bright" else 70
        arr = np.clip(base + rng.normal(0, 20, (40, 48)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"img{i:02d}.png")
        rows.append(f"img{i:02d}.png,{label},p{i // 3}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    task = f"csv:{tmp_path / 'labels.csv'}::patient=patient::modality=ultrasound"
    cfg = TrainConfig(task=task, arch="smallcnn", input_size=32, epochs=3, batch_size=8, out=str(tmp_path / "w"),
                      name="csv_run", device="cpu", num_threads=1, gate=False, ema_decay=None, lr=3e-3)
    spec = train(cfg)
    assert spec.labels == ("bright", "dark") and spec.training["data"].endswith("labels.csv")
    assert spec.training["data_checksum_sha256_manifest"] == hashlib.sha256(
        (tmp_path / "labels.csv").read_bytes()).hexdigest()
    n = spec.training["n"]
    assert sum(n.values()) == 60 and min(n.values()) >= 6
    assert spec.tta == ("identity", "hflip", "zoom_in", "zoom_out", "shift_left", "shift_right")
    assert spec.metrics["test"]["accuracy"] >= 0.9  # brightness separates the classes


def test_fit_temperature_recovers_known_temperature() -> None:
    rng = np.random.default_rng(0)
    n, k, t_true = 20000, 3, 2.5
    z = rng.normal(0, 2.0, (n, k))  # calibrated logits
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > p.cumsum(1)).sum(1)  # labels drawn from softmax(z)
    t = fit_temperature(z * t_true, y)  # an overconfident model: logits scaled by 2.5
    assert t == pytest.approx(t_true, rel=0.05)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.05)
    assert fit_temperature(z / 2, y) == pytest.approx(0.5, rel=0.05)  # underconfident -> T < 1


def test_fit_temperature_on_a_perfectly_separated_validation_split_keeps_t_1() -> None:
    """All validation images right: NLL falls as T -> 0, no maximum-likelihood T exists; do not sharpen."""
    y = np.array([0, 1, 0, 1, 1])
    z = np.stack([1.0 - y, y.astype(float)], 1) * 3.0  # every argmax correct
    assert fit_temperature(z, y) == 1.0
    z[0] = [0.0, 1.0]  # one mistake: the MLE exists again and is fitted
    assert fit_temperature(z, y) != 1.0


def test_unknown_task_and_bad_csv_options_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from medimg.cli import main
    from medimg.errors import SpecError
    from medimg.training.tasks import get_task

    with pytest.raises(SpecError, match="unknown task 'chest'"):
        get_task("chest")
    with pytest.raises(SpecError, match="unknown modality 'pet'"):
        get_task(f"csv:{tmp_path / 'labels.csv'}::modality=pet")
    with pytest.raises(SpecError, match="channels must be 1 or 3"):
        get_task(f"csv:{tmp_path / 'labels.csv'}::channels=2")
    assert get_task(f"csv:{tmp_path / 'l.csv'}::channels=3::modality=microscopy").in_chans == 3
    assert main(["train", "--task", "chest", "--out", str(tmp_path)]) == 2  # a message, not a traceback
    assert "medimg: unknown task 'chest'" in capsys.readouterr().err


def test_class_balanced_sampler_evens_out_the_classes_and_splits_across_ranks() -> None:
    from medimg.training.data import GlobalBatchSampler

    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    plain = GlobalBatchSampler(1000, 50, seed=3)
    drawn_plain = torch.tensor([i for b in plain for i in b])
    assert sorted(drawn_plain.tolist()) == list(range(1000))  # a permutation: every image once
    counts_plain = torch.bincount(labels[drawn_plain], minlength=3)
    assert counts_plain.tolist() == [900, 90, 10]
    bal = GlobalBatchSampler(1000, 50, seed=3, labels=labels)
    counts = torch.zeros(3)
    for epoch in range(5):
        bal.set_epoch(epoch)
        drawn = torch.tensor([i for b in bal for i in b])
        assert len(drawn) == 1000
        counts += torch.bincount(labels[drawn], minlength=3)
    share = counts / counts.sum()
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.03), share  # each class a third of the draws
    bal.set_epoch(0)
    first = [list(b) for b in bal]
    assert first == [list(b) for b in bal]  # seeded: the same epoch draws the same batches
    bal.set_epoch(1)
    assert first != [list(b) for b in bal]
    ranks = [GlobalBatchSampler(1000, 50, seed=3, rank=r, world_size=2, labels=labels) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(0)
    for whole, a, b in zip(first, *ranks, strict=True):  # the two ranks' halves make the single-process batch
        assert sorted(whole) == sorted(a + b)
    with pytest.raises(ValueError, match="labels"):
        GlobalBatchSampler(1000, 50, labels=labels[:10])


def test_balanced_sampling_run_records_it_and_drops_the_loss_weights(tmp_path: Path, shared_data: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.cli import main
    from medimg.evaluate import EvalReport

    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 10})))
    seen: list[torch.Tensor | None] = []
    real_ce = torch.nn.functional.cross_entropy

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202
        seen.append(k.get("weight"))
        return real_ce(*a, **k)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    args = ["train", "--task", "pbc-blood", "--arch", "smallcnn", "--size", "32", "--epochs", "1", "--batch-size",
            "8", "--limit", "24", "--out", str(tmp_path), "--name", "bal", "--device", "cpu", "--threads", "1",
            "--no-gate", "--ema-decay", "0", "--balanced-sampling"]
    assert main(args) == 0
    spec = json.loads((tmp_path / "bal.json").read_text())
    assert spec["training"]["config"]["balanced_sampling"] is True
    train_weights = [w for w in seen if w is not None]
    assert train_weights and all(torch.equal(w.cpu(), torch.ones_like(w.cpu())) for w in train_weights)
