"""The head CT and cervical cytology tasks: grouped splits and folds (no scan block or slide image in two splits,
on the real MANIFESTs), grey head CT input, fold keys, the cross-validation summary and the screening metrics."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from medimg.catalog import read_manifest
from medimg.errors import SpecError
from medimg.evaluate import EvalReport
from medimg.screening import threshold_for_sensitivity
from medimg.spec import PreprocessConfig
from medimg.training.cv import summarise_cv
from medimg.training.screening import (
    abnormal_score,
    screening_metrics,
    sensitivity_at_specificity,
    threshold_for_specificity,
)
from medimg.training.tasks import TASKS, check_groups, fold_splits, get_task, load_task_split, split_fold_key


def _splits_of(rows: list[dict[str, str]], group_col: str, key: str = "split") -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        out[r[group_col]].add(r[key])
    return out


def test_head_ct_blocks_never_in_two_splits_or_folds(shared_data: Path) -> None:
    rows = read_manifest(shared_data / "head-ct")
    assert len(rows) == 200
    assert all(len(s) == 1 for s in _splits_of(rows, "id_block10").values())
    assert all(len(s) == 1 for s in _splits_of(rows, "id_block10", "fold").values())
    check_groups(rows, "id_block10")  # the loader's own check agrees
    for k in range(TASKS["head-ct"].n_folds):
        cv = fold_splits(rows, k, 5)
        check_groups(cv, "id_block10")
        by_split = defaultdict(list)
        for r in cv:
            by_split[r["split"]].append(r)
        assert {r["fold"] for r in by_split["test"]} == {str(k)}
        assert {r["fold"] for r in by_split["val"]} == {str((k + 1) % 5)}
        for split in ("train", "val", "test"):  # both classes everywhere
            assert {r["label"] for r in by_split[split]} == {"hemorrhage", "normal"}
    # over the 5 folds every image is tested exactly once
    tested = [r["path"] for k in range(5) for r in fold_splits(rows, k, 5) if r["split"] == "test"]
    assert sorted(tested) == sorted(r["path"] for r in rows)


def test_cric_slide_images_never_in_two_splits(shared_data: Path) -> None:
    rows = read_manifest(shared_data / "cric-cervix")
    assert len(rows) == 5579
    assert all(len(s) == 1 for s in _splits_of(rows, "image_id").values())
    check_groups(rows, "image_id")
    labels = set(TASKS["cric-cervix"].labels)
    for split in ("train", "val", "test"):
        assert {r["label"] for r in rows if r["split"] == split} == labels  # every Bethesda class in every split


def test_check_groups_refuses_leakage() -> None:
    rows = [{"image_id": "1", "split": "train"}, {"image_id": "2", "split": "test"}, {"image_id": "1", "split": "val"}]
    with pytest.raises(SpecError, match="image_id 1"):
        check_groups(rows, "image_id")


def test_fold_keys() -> None:
    assert split_fold_key("head-ct::fold=3") == ("head-ct", 3)
    assert split_fold_key("busi") == ("busi", None)
    assert get_task("head-ct::fold=0") is TASKS["head-ct"]
    with pytest.raises(SpecError, match="0-4"):
        split_fold_key("head-ct::fold=5")
    with pytest.raises(SpecError, match="no cross-validation folds"):
        get_task("cric-cervix::fold=0")


def test_head_ct_loads_grey_and_fold_splits_are_disjoint(shared_data: Path) -> None:
    task = TASKS["head-ct"]
    assert task.in_chans == 1  # the colour tints are a shortcut: the network sees luma only
    pp = PreprocessConfig(input_size=(16, 16), in_chans=1, geometry=task.geometry)
    parts = {s: load_task_split("head-ct::fold=2", s, pp) for s in ("train", "val", "test")}
    assert {s: len(a.y) for s, a in parts.items()} == {"train": 120, "val": 40, "test": 40}
    assert all(a.x.shape[1] == 1 for a in parts.values())
    ids = [set(a.ids) for a in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    block = {r["path"]: r["id_block10"] for r in read_manifest(shared_data / "head-ct")}
    blocks = [{block[i] for i in s} for s in ids]
    assert not (blocks[0] & blocks[1] or blocks[0] & blocks[2] or blocks[1] & blocks[2])


def test_cv_summary_pools_out_of_fold_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        for k in range(5):
            y = np.array([0, 1] * 4)
            p1 = np.clip(0.5 + (y - 0.5) * rng.uniform(0.2, 0.9, 8), 0, 1)  # every fold separates perfectly
            rep = EvalReport.build(f"m_fold{k}_seed{seed}", "test", ["normal", "hemorrhage"], y,
                                   np.stack([1 - p1, p1], 1), [f"{k}-{i}" for i in range(8)], 1, n_boot=5)
            rep.save(tmp_path / f"m_fold{k}_seed{seed}.eval.json")
    s = summarise_cv(tmp_path, "m")
    assert s["folds"] == 5 and len(s["runs"]) == 10 and sorted(s["pooled"]) == ["0", "1"]
    assert s["per_fold"]["accuracy"] == [1.0, 0.0] and s["pooled"]["0"]["n"] == 40
    assert s["pooled_mean_sd"]["auroc"][0] == 1.0
    assert (tmp_path / "m.cv.json").exists()


def test_screening_metrics() -> None:
    labels = ("NILM", "ASC-US", "SCC")
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    y = np.array([0, 0, 1, 2, 2])
    score = abnormal_score(probs, labels)
    assert np.allclose(score, [0.1, 0.2, 0.7, 0.9, 0.4])
    m = screening_metrics(y, probs, labels, threshold=0.3)
    assert m["n_abnormal"] == 3 and m["n_negative"] == 2 and m["auroc"] == 1.0
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0 and m["sensitivity_at_spec"] == 1.0
    with pytest.raises(ValueError):
        abnormal_score(probs, ("a", "b", "c"))


def test_threshold_for_specificity_holds_on_its_data() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(2000) < 0.3
    score = np.where(y, rng.normal(1.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000))
    t = threshold_for_specificity(y, score, 0.95)
    spec = float((score[~y] < t).mean())
    assert 0.95 <= spec < 0.95 + 2 / (~y).sum()  # at least 95 %, by no more than one image
    sens = float((score[y] >= t).mean())
    assert abs(sens - sensitivity_at_specificity(y, score, 0.95)) < 0.01  # same point as read off the ROC
    assert 0.2 < sens < 0.45  # d' = 1: about 26 % at 95 % specificity


def test_threshold_for_sensitivity_holds_on_its_data() -> None:
    rng = np.random.default_rng(2)
    y = rng.random(1000) < 0.2
    score = np.where(y, rng.normal(1.0, 1.0, 1000), rng.normal(0.0, 1.0, 1000))
    for target in (0.5, 0.9, 0.95, 1.0):
        t = threshold_for_sensitivity(y, score, target)
        sens = float((score[y] >= t).mean())
        assert target <= sens < target + 1.5 / y.sum()  # at least the target, by no more than one image
        assert t in score[y]  # one positive's score: the largest threshold that keeps that many
    assert threshold_for_sensitivity(y, score, 1.0) == score[y].min()
    with pytest.raises(ValueError):
        threshold_for_sensitivity(np.zeros(5, bool), score[:5], 0.9)
    with pytest.raises(ValueError):
        threshold_for_sensitivity(y, score, 0.0)


def test_medmnist_folds_are_stratified_and_cover_every_image_once() -> None:
    from medimg.training.data import medmnist_folds

    rng = np.random.default_rng(1)
    y_train, y_val = (rng.random(546) < 0.27).astype(int), (rng.random(78) < 0.27).astype(int)
    f = medmnist_folds(y_train, y_val, 5)
    assert f["train"].shape == (546,) and f["val"].shape == (78,)
    pooled_f, pooled_y = np.concatenate([f["train"], f["val"]]), np.concatenate([y_train, y_val])
    sizes = np.bincount(pooled_f, minlength=5)
    assert sizes.sum() == 624 and sizes.max() - sizes.min() <= 1  # a partition into near-equal folds
    for c in (0, 1):  # each class dealt evenly over the folds
        per_fold = np.bincount(pooled_f[pooled_y == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    again = medmnist_folds(y_train, y_val, 5)
    assert all(np.array_equal(f[s], again[s]) for s in f)  # fixed seed: the same folds every time
    assert not np.array_equal(pooled_f, np.concatenate(list(medmnist_folds(y_train, y_val, 5, seed=1).values())))


def test_breastmnist_fold_splits_hold_out_each_image_once_and_never_the_test_split(shared_data: Path) -> None:
    assert split_fold_key("breastmnist::fold=4") == ("breastmnist", 4)
    with pytest.raises(SpecError, match="0-4"):
        split_fold_key("breastmnist::fold=5")
    pp = PreprocessConfig(input_size=(8, 8), in_chans=1)
    held_out: list[str] = []
    for k in range(TASKS["breastmnist"].n_folds):
        parts = {s: load_task_split(f"breastmnist::fold={k}", s, pp) for s in ("train", "val", "test")}
        ids = {s: set(a.ids) for s, a in parts.items()}
        assert sum(len(v) for v in ids.values()) == 624  # official train (546) + val (78), nothing else
        assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
        assert all(i.split("/")[0] in ("train", "val") for v in ids.values() for i in v)  # never official test
        assert {len(v) for s, v in ids.items() if s != "train"} <= {124, 125}
        for a in parts.values():  # both classes everywhere, labels as the official file says
            assert set(a.y.tolist()) == {0, 1}
        held_out += parts["test"].ids
        if k == 0:  # the label travels with its image
            npz = np.load(shared_data / "medmnist" / "breastmnist.npz")
            for i, y in zip(parts["test"].ids[:20], parts["test"].y.tolist()[:20], strict=True):
                split, idx = i.split("/")
                assert int(npz[f"{split}_labels"][int(idx)].item()) == y
    assert len(held_out) == len(set(held_out)) == 624


def test_cv_summary_records_the_runs_common_recipe(tmp_path: Path) -> None:
    from medimg.training.cv import recipe_of

    shipped = json.loads((Path(__file__).resolve().parents[1] / "weights" / "breastmnist_mobilenet_v2_224.json")
                         .read_text())
    y = np.array([0, 1] * 4)
    probs = np.stack([1 - y * 0.8 - 0.1, y * 0.8 + 0.1], 1)
    base = {"task": "breastmnist::fold=0", "arch": "mobilenet_v2", "input_size": 224, "lr": 0.001, "seed": 0,
            "out": "runs/cv", "name": "m_fold0_seed0", "num_threads": 2, "gate": False}
    for k in range(2):
        EvalReport.build(f"m_fold{k}_seed0", "test", ["benign", "malignant"], y, probs, [f"{k}-{i}" for i in range(8)],
                         1, n_boot=5).save(tmp_path / f"m_fold{k}_seed0.eval.json")
        cfg = {**base, "task": f"breastmnist::fold={k}", "name": f"m_fold{k}_seed0", "num_threads": 1 + k}
        (tmp_path / f"m_fold{k}_seed0.json").write_text(json.dumps({**shipped, "training": {"config": cfg}}))
    recipe = summarise_cv(tmp_path, "m")["recipe"]
    assert recipe.pop("preprocess")["input_size"] == [224, 224]  # what the network sees is part of the recipe
    # fold, seed, paths, threads and the gate do not change the network; the rest is the recipe
    assert recipe == recipe_of({**base, "seed": 7}) and not set(recipe) & {"task", "seed", "out", "name", "gate"}
    assert (recipe["arch"], recipe["input_size"], recipe["lr"]) == ("mobilenet_v2", 224, 0.001)
    assert recipe["grade_weight"] == 0.0 and recipe["teachers"] == []  # options newer than a run: their defaults
    other = json.loads((tmp_path / "m_fold1_seed0.json").read_text())
    other["training"]["config"]["lr"] = 0.01  # a run of another recipe: no common recipe is claimed
    (tmp_path / "m_fold1_seed0.json").write_text(json.dumps(other))
    assert summarise_cv(tmp_path, "m")["recipe"] is None
    other["training"]["config"]["lr"] = 0.001
    other["preprocess"]["window"] = "HU 40/80"  # nor when what the network saw differs
    (tmp_path / "m_fold1_seed0.json").write_text(json.dumps(other))
    assert summarise_cv(tmp_path, "m")["recipe"] is None
    (tmp_path / "m_fold1_seed0.json").unlink()  # a run without its spec: none claimed either
    assert summarise_cv(tmp_path, "m")["recipe"] is None


def test_record_cv_writes_only_a_summary_of_the_shipped_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    from medimg.spec import load_spec, save_spec
    from medimg.training.cv import run_recipe

    repo = Path(__file__).resolve().parents[1]
    spec_path = tmp_path / "breastmnist_mobilenet_v2_224.json"
    shipped = load_spec(repo / "weights" / spec_path.name)  # it may already carry its record: start without one
    save_spec(shipped.replace(metrics={k: v for k, v in shipped.metrics.items() if k != "recipe_cv"}), spec_path)
    recipe = run_recipe(spec_path)
    summary = {"folds": 5, "per_fold": {"accuracy": [0.85, 0.03], "auroc": [0.9, 0.02], "ece": [0.1, 0.01]},
               "pooled": {"0": {"accuracy": 0.85, "auroc": 0.9, "n": 624, "ece": 0.1}}, "recipe": {**recipe, "lr": 0.01}}
    (tmp_path / "s.cv.json").write_text(json.dumps(summary))
    monkeypatch.setattr("sys.argv", ["record_cv.py", str(spec_path), str(tmp_path / "s.cv.json")])

    def record() -> None:
        runpy.run_path(str(repo / "bench" / "record_cv.py"), run_name="__main__")

    with pytest.raises(SystemExit, match="lr 0.001 here, 0.01 there"):  # not this network's recipe
        record()
    assert "recipe_cv" not in load_spec(spec_path).metrics
    (tmp_path / "s.cv.json").write_text(json.dumps({**summary, "recipe": recipe}))
    record()
    rec = load_spec(spec_path).metrics["recipe_cv"]
    assert rec["kind"] == "stratified" and rec["pooled"] == {"0": {"accuracy": 0.85, "auroc": 0.9, "n": 624}}
    assert rec["per_fold"] == {"accuracy": [0.85, 0.03], "auroc": [0.9, 0.02]}
