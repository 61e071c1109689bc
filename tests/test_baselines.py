"""Classical HOG baselines (medimg.baselines): feature shapes, learning a separable problem, chance on
shuffled labels, and C chosen on validation only."""

from __future__ import annotations

import sys
import types
from functools import cache

import numpy as np
import pytest

from medimg.spec import PreprocessConfig
from medimg.training import baselines
from medimg.training.baselines import fit_baseline_arrays, hog_features, make_classifier


def _stripes(n: int, size: int, rng: np.random.Generator, chans: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Vertical (label 0) or horizontal (label 1) stripes of random period and phase, plus noise, in [0, 1]."""
    y = rng.integers(0, 2, n)
    yy, xx = np.mgrid[0:size, 0:size]
    x = np.empty((n, chans, size, size), dtype=np.float32)
    for i in range(n):
        period, phase = rng.uniform(4, 8), rng.uniform(0, 2 * np.pi)
        coord = xx if y[i] == 0 else yy
        img = 0.5 + 0.25 * np.sin(2 * np.pi * coord / period + phase) + rng.normal(0, 0.2, (size, size))
        x[i] = np.clip(img, 0, 1)[None]
    return x, y


@cache
def _feature_splits(seed: int = 0, size: int = 28) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    """(train, val, test) HOG features and labels of stripe images; cached, so callers must not modify them."""
    return tuple((hog_features(x), y) for x, y in (_stripes(n, size, rng) for n in (160, 80, 160)))


@pytest.mark.parametrize(("shape", "dim"), [((3, 1, 64, 64), 1764), ((3, 64, 64), 1764), ((2, 3, 64, 64), 1764),
                                            ((4, 1, 28, 28), 1296), ((2, 3, 28, 28), 1296)])
def test_hog_shape_and_dtype(shape: tuple[int, ...], dim: int) -> None:
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    f = hog_features(x)
    assert f.shape == (shape[0], dim)
    assert f.dtype == np.float32
    assert np.isfinite(f).all() and (f >= 0).all()


def test_hog_three_channels_uses_colour() -> None:
    """A pattern present only in the green channel is seen by the 3-channel descriptor."""
    rng = np.random.default_rng(1)
    x, _ = _stripes(2, 64, rng)
    rgb = np.zeros((2, 3, 64, 64), dtype=np.float32)
    rgb[:, 1] = x[:, 0]
    np.testing.assert_allclose(hog_features(rgb), hog_features(x), atol=1e-5)
    assert hog_features(np.zeros_like(rgb)).max() == 0


@pytest.mark.parametrize("shape", [(2, 2, 64, 64), (2, 64), (0, 1, 64, 64), (2, 1, 6, 6)])
def test_hog_rejects_bad_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        hog_features(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("model", ["logreg", "svm"])
def test_learns_separable_stripes(model: str) -> None:
    train, val, test = _feature_splits()
    r = fit_baseline_arrays(train, val, test, model)
    assert r["metrics"]["accuracy"] >= 0.95
    assert r["metrics"]["auroc"] >= 0.98
    assert r["metrics"]["n"] == len(test[1])
    assert r["C"] in baselines.C_GRID[model]


@pytest.mark.parametrize("model", ["logreg", "svm"])
def test_shuffled_labels_are_near_chance(model: str) -> None:
    """Labels permuted in every split carry no information: test AUROC and accuracy stay near 0.5 (SD ~0.05
    at 160 test images). Only the test labels are what matters: a model fitted on shuffled train labels may
    still split the bimodal stripe features, with a random sign, so train/val alone are not shuffled."""
    train, val, test = _feature_splits()
    rng = np.random.default_rng(3)
    shuffled = tuple((f, rng.permutation(y)) for f, y in (train, val, test))
    r = fit_baseline_arrays(*shuffled, model)
    assert 0.35 <= r["metrics"]["auroc"] <= 0.65
    assert r["metrics"]["accuracy"] <= 0.65


def test_c_is_chosen_on_validation_only() -> None:
    """The chosen C maximises validation AUROC and does not change when the test split is replaced."""
    train, val, test = _feature_splits()
    rng = np.random.default_rng(5)
    noise_test = (rng.normal(size=test[0].shape).astype(np.float32), rng.integers(0, 2, len(test[1])))
    a = fit_baseline_arrays(train, val, test, "logreg")
    b = fit_baseline_arrays(train, val, noise_test, "logreg")
    assert a["C"] == b["C"]
    assert a["val_auroc"] == b["val_auroc"]
    assert a["val_auroc"][a["C"]] == max(a["val_auroc"].values())
    assert a["metrics"]["auroc"] != b["metrics"]["auroc"]


def test_selection_follows_validation_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a spy in place of the model factory, only train and val rows are scored before C is fixed."""
    train, val, test = _feature_splits()
    seen: list[int] = []

    class Spy:
        def __init__(self, pipe) -> None:
            self.pipe = pipe

        def fit(self, x, y):
            self.pipe.fit(x, y)
            self.classes_ = self.pipe.classes_
            return self

        def predict_proba(self, x):
            seen.append(len(x))
            return self.pipe.predict_proba(x)

    monkeypatch.setattr(baselines, "make_classifier", lambda *a, **k: Spy(make_classifier(*a, **k)))
    grid = (1e-3, 1e-1)
    r = fit_baseline_arrays(train, val, test[:1] + (test[1],), "logreg", c_grid=grid)
    # one val scoring per C, then exactly one test scoring, last
    assert seen == [len(val[1])] * len(grid) + [len(test[1])]
    assert r["C"] in grid


def test_fit_arrays_errors() -> None:
    train, val, test = _feature_splits()
    with pytest.raises(ValueError, match="unknown model"):
        fit_baseline_arrays(train, val, test, "forest")
    with pytest.raises(ValueError, match="fewer than two"):
        fit_baseline_arrays((train[0], np.zeros_like(train[1])), val, test)
    with pytest.raises(ValueError, match="labels"):
        fit_baseline_arrays((train[0], train[1][:-1]), val, test)


def test_fit_baseline_loads_val_and_test_through_the_task_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data-loading wrapper, with a stand-in ``medimg.training.tasks`` (no torch, no data files): 28 px for a
    MedMNIST task, the positive index from the task's label names, split sizes reported, unknown task refused."""
    rng = np.random.default_rng(9)
    data = {s: _stripes(n, 28, rng) for s, n in (("train", 120), ("val", 60), ("test", 90))}
    calls: list[tuple[str, str, tuple[int, int]]] = []

    def load_task_split(task_key, split, config, limit=None):
        calls.append((task_key, split, config.input_size))
        x, y = data[split]
        return types.SimpleNamespace(x=x, y=y, labels=("horizontal", "vertical")[::-1], ids=[])

    task = types.SimpleNamespace(medmnist_flag="stripesmnist", in_chans=1, geometry="stretch", positive="horizontal")
    fake = types.ModuleType("medimg.training.tasks")
    fake.TASKS, fake.load_task_split = {"stripes": task}, load_task_split
    fake.preprocess_config = lambda key, size: PreprocessConfig(input_size=(size, size), in_chans=task.in_chans,
                                                                mean=(0.5,), std=(0.25,), geometry=task.geometry)
    monkeypatch.setitem(sys.modules, "medimg.training.tasks", fake)
    r = baselines.fit_baseline("stripes", "logreg")
    assert sorted(c[1] for c in calls) == ["test", "train", "val"]
    assert {c[2] for c in calls} == {(28, 28)}
    assert r["n"] == {"train": 120, "val": 60, "test": 90} and r["feature_dim"] == 1296 and r["size"] == 28
    assert r["metrics"]["accuracy"] >= 0.95
    assert r["labels"] == ["vertical", "horizontal"] and r["metrics"]["sensitivity"] >= 0.9
    assert r["seconds"] >= r["fit_seconds"] > 0
    with pytest.raises(ValueError, match="unknown task"):
        baselines.fit_baseline("no-such-task")


def test_multiclass_probabilities_cover_all_classes() -> None:
    """K taken from n_classes: a class absent from train gets a zero probability column, metrics still run."""
    rng = np.random.default_rng(8)
    x, y = _stripes(120, 28, rng)
    f = hog_features(x)
    r = fit_baseline_arrays((f[:60], y[:60]), (f[60:90], y[60:90]), (f[90:], y[90:]), "logreg", n_classes=3)
    assert r["metrics"]["n"] == 30
    assert len(r["metrics"]["confusion_matrix"]) == 3
