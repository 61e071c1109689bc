"""Data packs: train on a machine without the data, finish on the real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import SpecError
from medimg.evaluate import EvalReport
from medimg.spec import PreprocessConfig, load_spec
from medimg.training.config import TrainConfig
from medimg.training.evaluation import evaluate_split
from medimg.training.loop import train
from medimg.training.pack import finalise, pack_info, read_pack, source_checksum, write_pack
from medimg.training.tasks import load_task_split

PP = PreprocessConfig(input_size=(32, 32), in_chans=1, mean=(0.5,), std=(0.25,))


pytestmark = pytest.mark.usefixtures("fast_training")


@pytest.mark.parametrize("fmt,tol", [("png", 0.5 / 255 + 1e-6), ("webp", 0.2), ("jpeg", 0.2)])
def test_pack_round_trip_matches_the_preprocessed_split(tmp_path: Path, shared_data: Path, fmt: str,
                                                        tol: float) -> None:
    meta = write_pack("kermany-cxr", PP, tmp_path / "p.npz", fmt=fmt, quality=90, limit=12)
    assert meta["n"] == {"train": 12, "val": 12, "test": 12} and meta["labels"] == ["normal", "pneumonia"]
    assert meta["source_checksum"] == source_checksum("kermany-cxr") and len(meta["source_checksum"]) == 64
    real = load_task_split("kermany-cxr", "val", PP, 12)
    got = read_pack(tmp_path / "p.npz", "val", PP)
    assert got.x.shape == real.x.shape and got.x.dtype == torch.float32
    assert torch.equal(got.y, real.y) and got.ids == real.ids and got.labels == real.labels
    err = (got.x - real.x).abs()
    assert float(err.max()) <= tol  # PNG: only the 8-bit rounding; lossy formats: small
    assert float(err.mean()) < 0.02
    # a plain npz of numbers: readable without pickle
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert len(pack_info(tmp_path / "p.npz")["sha256"]) == 64


def test_pack_made_for_another_geometry_or_task_is_refused(tmp_path: Path, shared_data: Path) -> None:
    write_pack("kermany-cxr", PP, tmp_path / "p.npz", fmt="png", limit=4)
    with pytest.raises(SpecError, match="made for"):
        read_pack(tmp_path / "p.npz", "train", PreprocessConfig(input_size=(64, 64), in_chans=1, mean=(0.5,),
                                                                 std=(0.25,)))
    for other in ({"roi": "foreground"}, {"window": "HU 40/80"}):  # the same size, another window or crop
        with pytest.raises(SpecError, match="made for"):
            read_pack(tmp_path / "p.npz", "train", PreprocessConfig(input_size=(32, 32), in_chans=1, mean=(0.5,),
                                                                     std=(0.25,), **other))
    cfg = TrainConfig(task="busi", arch="smallcnn", input_size=32, epochs=1, batch_size=4, out=str(tmp_path),
                      device="cpu", gate=False, data_pack=str(tmp_path / "p.npz"))
    with pytest.raises(SpecError, match="holds task 'kermany-cxr'"):
        train(cfg)
    (tmp_path / "bad.npz").write_bytes(b"not a pack")
    with pytest.raises(SpecError, match="not a medimg data pack"):
        pack_info(tmp_path / "bad.npz")
    # a file holding a Python object (which numpy would have to unpickle) is not read
    np.savez(tmp_path / "obj.npz", meta=np.array([{"version": 1}], dtype=object))
    with pytest.raises(SpecError, match="not a medimg data pack"):
        pack_info(tmp_path / "obj.npz")
    with pytest.raises(SpecError, match="format"):
        write_pack("kermany-cxr", PP, tmp_path / "x.npz", fmt="gif")


def test_train_from_a_pack_then_finalise_on_the_real_images(tmp_path: Path, shared_data: Path) -> None:
    write_pack("kermany-cxr", PP, tmp_path / "p.npz", fmt="webp", quality=60, limit=24)
    cfg = TrainConfig(task="kermany-cxr", arch="smallcnn", input_size=32, epochs=1, batch_size=8, out=str(tmp_path),
                      name="packed", device="cpu", num_threads=1, gate=False, data_pack=str(tmp_path / "p.npz"))
    spec = train(cfg)
    assert spec.training["data_pack"]["format"] == "webp" and spec.training["data_pack"]["quality"] == 60
    assert spec.training["data_checksum_sha256_manifest"] == source_checksum("kermany-cxr")
    packed_report = json.loads((tmp_path / "packed.eval.json").read_text())
    sha = spec.sha256
    final = finalise(tmp_path / "packed.json", device="cpu", limit=24)
    assert final.sha256 == sha  # the weights are untouched
    on_disk = load_spec(tmp_path / "packed.json")
    assert on_disk.temperature == final.temperature and "finalised_on" in on_disk.training
    report = EvalReport.load(tmp_path / "packed.eval.json")
    # the report now holds the real test images' probabilities, which the model reproduces from the data
    from medimg.models import load_model
    from medimg.predict import batch_logits, softmax

    model, _ = load_model(tmp_path / "packed.json")
    real = load_task_split("kermany-cxr", "test", on_disk.preprocess, 24)
    again = softmax(batch_logits(model, real.x, on_disk.preprocess, torch.device("cpu")), on_disk.temperature)
    np.testing.assert_allclose(again, report.probs, atol=2e-6)
    assert report.ids == real.ids and packed_report["ids"] == real.ids


def test_finalise_stores_the_screening_view_of_a_bethesda_model(tmp_path: Path, shared_data: Path) -> None:
    """The dashboard's NILM-vs-abnormal view reads ``metrics["screening"]``: finalise writes it for a model of the
    Bethesda classes, with the threshold fixed on validation, and the test figures at that threshold."""
    from medimg.screening import abnormal_score, screening_metrics
    from medimg.training.screening import threshold_for_specificity

    cfg = TrainConfig(task="cric-cervix", arch="smallcnn", input_size=32, epochs=1, batch_size=16, out=str(tmp_path),
                      name="cells", device="cpu", num_threads=1, gate=False, limit=120)
    train(cfg)
    final = finalise(tmp_path / "cells.json", device="cpu", limit=120)
    sc = load_spec(tmp_path / "cells.json").metrics["screening"]
    assert sc == json.loads(json.dumps(final.metrics["screening"]))
    assert sc["negative"] == "NILM" and 0.0 <= sc["validation_threshold"] <= 1.0
    labels = list(final.labels)
    val = evaluate_split(tmp_path / "cells.json", "val", device="cpu", limit=120)
    t = threshold_for_specificity(val.y_true != labels.index("NILM"), abnormal_score(val.probs, labels, "NILM"), 0.95)
    assert sc["validation_threshold"] == pytest.approx(t)
    test = EvalReport.load(tmp_path / "cells.eval.json")
    want = screening_metrics(test.y_true, test.probs, labels, "NILM", 0.95, t)
    for k in ("auroc", "sensitivity", "specificity", "n_abnormal", "n_negative"):
        assert sc["test"][k] == pytest.approx(want[k]), k
