"""The arithmetic of the accuracy studies' helpers (weight soup, validation-chosen thresholds) on tiny inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(stem: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{stem}", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_soup_is_the_elementwise_mean_and_keeps_integer_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    soup = _load("soup", monkeypatch)
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)) for _ in range(3)]
    for k, n in enumerate(nets):
        n[1].num_batches_tracked.fill_(10 + k)
        n[1].running_mean.fill_(float(k))
    states = [n.state_dict() for n in nets]
    out = soup.soup_state(states)
    torch.testing.assert_close(out["0.weight"], torch.stack([s["0.weight"] for s in states]).mean(0))
    torch.testing.assert_close(out["1.running_mean"], torch.full((2,), 1.0))
    assert out["1.num_batches_tracked"].dtype == torch.long and int(out["1.num_batches_tracked"]) == 10
    merged = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    merged.load_state_dict(out)  # the soup is one network of the same architecture


def test_soup_refuses_networks_of_different_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    soup = _load("soup", monkeypatch)
    with pytest.raises(ValueError, match="architecture"):
        soup.soup_state([torch.nn.Linear(3, 2).state_dict(), torch.nn.Linear(4, 2).state_dict()])


def test_validation_threshold_maximises_accuracy_and_prefers_the_one_nearest_half(
        monkeypatch: pytest.MonkeyPatch) -> None:
    vt = _load("val_threshold", monkeypatch)
    # every positive above 0.2, every negative below: any cut in (0.15, 0.2] is perfect; 0.5 makes 2 errors
    p = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.6, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    t = vt.best_accuracy_threshold(p, y)
    assert 0.15 < t <= 0.2 and t == pytest.approx(0.175)
    assert vt.at(p, y, t)["errors"] == 0 and vt.at(p, y, 0.5)["errors"] == 2
    assert vt.at(p, y, 0.5)["sensitivity"] == 0.5 and vt.at(p, y, 0.5)["specificity"] == 1.0
    # separable data: Youden's J reaches 1 at a threshold that also separates
    assert vt.at(p, y, vt.youden_threshold(p, y))["errors"] == 0
    # already perfect at 0.5: 0.5 is kept (ties go to the threshold nearest 0.5)
    assert vt.best_accuracy_threshold(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 0, 1, 1])) == 0.5


def test_seed_ensemble_averages_probabilities_and_can_beat_every_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.evaluate import EvalReport

    acc = _load("accuracy", monkeypatch)
    y = np.array([0, 0, 1, 1])
    ids = ["a", "b", "c", "d"]
    # each seed gets exactly one image wrong, a different one, and only weakly: the mean gets all four right
    p1 = np.array([[0.45, 0.55], [0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
    p2 = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8], [0.1, 0.9]])
    p3 = np.array([[0.9, 0.1], [0.8, 0.2], [0.55, 0.45], [0.1, 0.9]])
    reps = [EvalReport.build("m", "test", ["no", "yes"], y, p, ids, 1, None, n_boot=10) for p in (p1, p2, p3)]
    assert all(r.metrics["accuracy"] == 0.75 for r in reps)
    out = acc.seed_ensemble(reps)
    assert out["runs"] == 3 and out["accuracy"] == 1.0 and "confusion_matrix" not in out
    np.testing.assert_allclose(out["auroc"], 1.0)


def test_seed_ensemble_refuses_one_run_or_other_test_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.evaluate import EvalReport

    acc = _load("accuracy", monkeypatch)
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    a = EvalReport.build("m", "test", ["no", "yes"], np.array([0, 1]), p, ["a", "b"], 1, None, n_boot=10)
    b = EvalReport.build("m", "test", ["no", "yes"], np.array([0, 1]), p, ["a", "c"], 1, None, n_boot=10)
    with pytest.raises(ValueError, match="at least two"):
        acc.seed_ensemble([a])
    with pytest.raises(ValueError, match="different test images"):
        acc.seed_ensemble([a, b])


def test_tta_temperature_keeps_1_on_a_perfectly_separated_split_and_fits_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tta = _load("tta_mean", monkeypatch)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    separated = np.stack([np.eye(3)[y] * 4.0 + rng.normal(0, 0.3, (200, 3)) for _ in range(2)])  # (V, N, K)
    assert tta.fit_t(separated, y) == 1.0  # no maximum-likelihood temperature exists: T -> 0 always helps
    noisy = separated + rng.normal(0, 3.0, separated.shape)  # some views wrong: a finite optimum
    t = tta.fit_t(noisy, y)
    assert t != 1.0 and 0.05 < t < 20.0


def test_averaged_ovr_metrics_reproduce_the_class_averaged_confusion_arithmetic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    acc = _load("accuracy", monkeypatch)
    rng = np.random.default_rng(0)
    k, n = 6, 600
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.75, y, rng.integers(0, k, n))
    err = float((pred != y).mean())
    d = acc.averaged_ovr_metrics(y, pred, k)
    # precision = recall = F1 = plain accuracy; "accuracy" 1 - 2 err / K; "specificity" 1 - err / (K - 1)
    for key in ("precision", "recall", "f1"):
        assert d[key] == pytest.approx(1 - err)
    assert d["accuracy"] == pytest.approx(1 - 2 * err / k)
    assert d["specificity"] == pytest.approx(1 - err / (k - 1))
    assert d["accuracy"] > d["f1"]  # the inflation the anchor note warns of
    perfect = acc.averaged_ovr_metrics(y, y, k)
    assert all(v == pytest.approx(1.0) for v in perfect.values())
