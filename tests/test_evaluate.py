"""Evaluation metrics against hand counts and scikit-learn; ECE; report round trip; bootstrap CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medimg.evaluate import (
    EvalReport,
    bootstrap_ci,
    compute_metrics,
    expected_calibration_error,
    predict_labels,
)


def _binary(p_pos: list[float]) -> np.ndarray:
    p = np.asarray(p_pos, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def test_binary_metrics_from_hand_counts() -> None:
    # 10 images, positive class 1; prediction = argmax (p >= 0.5 ties go to class 0 by argmax)
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = _binary([0.9, 0.8, 0.7, 0.2, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    # TP = 3 (0.9, 0.8, 0.7), FN = 1 (0.2), FP = 1 (0.6), TN = 5
    m = compute_metrics(y, p, positive_label=1)
    assert m["confusion_matrix"] == [[5, 1], [1, 3]]
    assert m["n"] == 10 and m["accuracy"] == pytest.approx(8 / 10)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["ppv"] == pytest.approx(3 / 4)
    assert m["npv"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    # by hand: 24 positive-negative pairs, the positive at 0.2 loses to 0.6, 0.4, 0.3 and ties 0.2
    assert m["auroc"] == pytest.approx((24 - 3 - 0.5) / 24)


def test_positive_label_zero_and_threshold() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = _binary([0.1, 0.45, 0.55, 0.8, 0.3])  # p(class 1)
    m = compute_metrics(y, p, positive_label=0)
    # positive = class 0: predicted 0 for p1 < 0.5 -> rows 0, 1, 4; TP = 2, FP = 1, FN = 0, TN = 2
    assert m["sensitivity"] == 1.0 and m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(2 / 3) and m["npv"] == 1.0
    assert m["auroc"] == pytest.approx(roc_auc_score(y == 0, p[:, 0]))
    # a threshold of 0.25 on class 1 turns row 4 (0.3) and row 1 (0.45) positive
    np.testing.assert_array_equal(predict_labels(p, 1, 0.25), [0, 1, 1, 1, 1])
    t = compute_metrics(y, p, positive_label=1, threshold=0.25)
    assert t["sensitivity"] == 1.0 and t["specificity"] == 0.5


def test_multiclass_auroc_matches_sklearn(rng: np.random.Generator) -> None:
    y = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert "sensitivity" not in m and np.array(m["confusion_matrix"]).sum() == 300


def test_nan_for_undefined_ratios() -> None:
    m = compute_metrics(np.array([0, 0, 0]), _binary([0.1, 0.2, 0.3]), positive_label=1)
    assert np.isnan(m["sensitivity"]) and np.isnan(m["ppv"]) and m["specificity"] == 1.0
    assert "auroc" not in m  # one class present: not defined


def test_ece_small_when_calibrated_large_when_overconfident(rng: np.random.Generator) -> None:
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(size=n) < conf  # calibrated: P(correct | conf) = conf
    y = np.where(correct, 1, 0)
    probs = np.stack([1 - conf, conf], 1)  # predicts class 1 with confidence conf
    assert expected_calibration_error(y, probs) < 0.02
    over = np.stack([np.full(n, 0.01), np.full(n, 0.99)], 1)  # 99 % sure, right ~75 % of the time
    ece = expected_calibration_error(y, over)
    assert ece == pytest.approx(0.99 - correct.mean(), abs=0.01) and ece > 0.2
    assert 0.0 <= expected_calibration_error(y, probs, n_bins=5) <= 1.0


def test_report_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 60)
    p = _binary(np.clip(0.3 * y + rng.uniform(0, 0.7, 60), 0, 1))
    rep = EvalReport.build("m", "test", ["normal", "pneumonia"], y, p, [f"img{i}" for i in range(60)], 1, None,
                           n_boot=10)
    rep.save(tmp_path / "r.json")
    back = EvalReport.load(tmp_path / "r.json")
    assert (back.model, back.split, back.labels, back.ids, back.positive_label, back.threshold) == (
        "m", "test", ["normal", "pneumonia"], rep.ids, 1, None)
    np.testing.assert_array_equal(back.y_true, y)
    np.testing.assert_array_equal(back.probs, p)  # stored at full precision
    np.testing.assert_array_equal(back.y_pred, rep.y_pred)
    assert back.metrics["accuracy"] == rep.metrics["accuracy"]
    assert {tuple(v) for v in back.metrics["ci95"].values()} == {tuple(v) for v in rep.metrics["ci95"].values()}


def test_bootstrap_ci_contains_point_estimate(rng: np.random.Generator) -> None:
    # few resamples: each one runs the full scikit-learn metric set (~0.1 s on a busy CPU)
    y = rng.integers(0, 2, 200)
    p = _binary(np.clip(0.4 * y + rng.uniform(0, 0.6, 200), 0, 1))
    m = compute_metrics(y, p, 1)
    keys = ("accuracy", "auroc", "sensitivity")
    ci = bootstrap_ci(y, p, keys, n_boot=40, positive_label=1)
    assert set(ci) == set(keys)
    for k, (lo, hi) in ci.items():
        assert lo <= m[k] <= hi and lo < hi, k
    # reproducible with the same seed, different with another
    assert bootstrap_ci(y, p, ("accuracy",), n_boot=10, positive_label=1) == bootstrap_ci(
        y, p, ("accuracy",), n_boot=10, positive_label=1)
    assert bootstrap_ci(y, p, ("accuracy",), n_boot=10, positive_label=1) != bootstrap_ci(
        y, p, ("accuracy",), n_boot=10, positive_label=1, seed=1)
    # wider with fewer images
    small = bootstrap_ci(y[:30], p[:30], ("accuracy",), n_boot=40, positive_label=1)
    assert small["accuracy"][1] - small["accuracy"][0] > ci["accuracy"][1] - ci["accuracy"][0]


def test_bootstrap_fast_path_matches_compute_metrics() -> None:
    """The numpy metrics used per bootstrap resample equal compute_metrics (scikit-learn), ties included."""
    from medimg.evaluate import _fast_binary, compute_metrics

    r = np.random.default_rng(7)
    y = r.integers(0, 2, 400)
    p1 = np.round(np.clip(0.35 * y + 0.65 * r.random(400), 0, 1), 2)  # rounding makes ties
    probs = np.stack([1 - p1, p1], axis=1)
    for threshold in (None, 0.3, 0.7):
        ref = compute_metrics(y, probs, 1, threshold)
        fast = _fast_binary(y, probs, 1, threshold)
        for key, value in fast.items():
            assert value == pytest.approx(ref[key], abs=1e-12), (key, threshold)


def test_multiclass_macro_sensitivity_specificity_one_vs_rest() -> None:
    import sklearn.metrics as skm

    from medimg.evaluate import compute_metrics

    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    probs = np.full((len(y), 3), 0.1)
    probs[np.arange(len(y)), pred] = 0.8
    m = compute_metrics(y, probs)
    # class 0: recall 2/3; class 1: 2/2; class 2: 2/4 -> balanced accuracy
    assert m["macro_sensitivity"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["per_class_sensitivity"] == pytest.approx([2 / 3, 1.0, 0.5])
    # specificity of class 0: negatives 6, predicted 0 among them 1 -> 5/6; class 1: 7 negatives, 2 FP -> 5/7;
    # class 2: 5 negatives, 0 FP -> 1
    assert m["per_class_specificity"] == pytest.approx([5 / 6, 5 / 7, 1.0])
    assert m["macro_specificity"] == pytest.approx((5 / 6 + 5 / 7 + 1.0) / 3)
    assert "sensitivity" not in m


# --------------------------------------------------------------------------------------------------------------
# Operating points and intervals for reviewers


def _binary_sample(seed: int = 11, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    p1 = np.clip(0.3 + 0.4 * y + r.normal(0, 0.2, n), 0.001, 0.999)
    return y, np.stack([1 - p1, p1], axis=1)


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.62, 0.9])
def test_operating_point_equals_sklearn(threshold: float) -> None:
    from sklearn import metrics as skm

    from medimg.evaluate import operating_point

    y, probs = _binary_sample()
    called = (probs[:, 1] >= threshold).astype(int)
    op = operating_point(y, probs, threshold, positive_label=1)
    tn, fp, fn, tp = skm.confusion_matrix(y, called, labels=[0, 1]).ravel()
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (tp, fp, tn, fn)
    assert op["sensitivity"] == pytest.approx(skm.recall_score(y, called))
    assert op["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - called))
    assert op["ppv"] == pytest.approx(skm.precision_score(y, called, zero_division=np.nan))
    assert op["npv"] == pytest.approx(skm.precision_score(1 - y, 1 - called))
    assert op["f1"] == pytest.approx(skm.f1_score(y, called))
    assert op["accuracy"] == pytest.approx(skm.accuracy_score(y, called))
    # same rule as the report's predictions
    from medimg.evaluate import predict_labels

    assert (predict_labels(probs, 1, threshold) == called).all()


def test_operating_point_positive_label_zero_and_ci() -> None:
    from sklearn import metrics as skm

    from medimg.evaluate import operating_point, operating_point_ci

    y, probs = _binary_sample(3)
    op = operating_point(y, probs, 0.4, positive_label=0)
    called0 = probs[:, 0] >= 0.4
    assert op["sensitivity"] == pytest.approx(skm.recall_score(y == 0, called0))
    ci = operating_point_ci(y, probs, 0.4, positive_label=0, n_boot=300)
    for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy"):
        assert ci[k][0] <= op[k] <= ci[k][1], k


def test_predictive_values_bayes() -> None:
    from medimg.evaluate import operating_point, predictive_values

    y, probs = _binary_sample(4, 2000)
    op = operating_point(y, probs, 0.5)
    ppv, npv = predictive_values(op["sensitivity"], op["specificity"], float(y.mean()))
    assert ppv == pytest.approx(op["ppv"]) and npv == pytest.approx(op["npv"])  # the sample's own prevalence
    low_ppv, high_npv = predictive_values(0.9, 0.8, 0.01)
    assert low_ppv == pytest.approx(0.9 * 0.01 / (0.9 * 0.01 + 0.2 * 0.99)) and high_npv > 0.99
    with pytest.raises(ValueError, match="prevalence"):
        predictive_values(0.9, 0.8, 1.5)


def test_all_metric_cis_cover_every_metric_and_the_point() -> None:
    from medimg.evaluate import CI_KEYS, all_metric_cis

    y, probs = _binary_sample(5)
    ci = all_metric_cis(y, probs, 1, n_boot=300)
    m = compute_metrics(y, probs, 1)
    assert set(ci) == set(CI_KEYS[2])
    for k in CI_KEYS[2]:
        assert ci[k][0] <= m[k] <= ci[k][1], k
    r = np.random.default_rng(6)
    y3 = r.integers(0, 3, 200)
    lg = r.normal(0, 1, (200, 3))
    lg[np.arange(200), y3] += 1.0
    p3 = np.exp(lg) / np.exp(lg).sum(1, keepdims=True)
    ci3 = all_metric_cis(y3, p3, n_boot=200)
    m3 = compute_metrics(y3, p3)
    assert set(ci3) == set(CI_KEYS["multi"])
    for k in CI_KEYS["multi"]:
        assert ci3[k][0] <= m3[k] <= ci3[k][1], k


def test_one_vs_rest_equals_sklearn() -> None:
    from sklearn import metrics as skm

    from medimg.evaluate import one_vs_rest

    r = np.random.default_rng(8)
    y = r.integers(0, 3, 150)
    lg = r.normal(0, 1, (150, 3))
    lg[np.arange(150), y] += 1.2
    p = np.exp(lg) / np.exp(lg).sum(1, keepdims=True)
    rows = one_vs_rest(y, p, ["a", "b", "c"], n_boot=100)
    pred = p.argmax(1)
    for c, row in enumerate(rows):
        assert row["label"] == "abc"[c] and row["n"] == int((y == c).sum())
        assert row["sensitivity"] == pytest.approx(skm.recall_score(y == c, pred == c))
        assert row["specificity"] == pytest.approx(skm.recall_score(y != c, pred != c))
        assert row["ppv"] == pytest.approx(skm.precision_score(y == c, pred == c))
        assert row["f1"] == pytest.approx(skm.f1_score(y == c, pred == c))
        assert row["auroc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]))
        assert set(row["ci"]) == {"sensitivity", "specificity", "ppv", "f1", "auroc"}


def test_uncalibrated_recovers_the_raw_softmax() -> None:
    from medimg.evaluate import uncalibrated

    r = np.random.default_rng(9)
    z = r.normal(0, 2, (50, 3))
    raw = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    t = 1.7
    cal = np.exp(z / t) / np.exp(z / t).sum(1, keepdims=True)
    np.testing.assert_allclose(uncalibrated(cal, t), raw, atol=1e-9)


def test_report_file_keeps_the_auroc_of_a_confident_model(tmp_path: Path, rng: np.random.Generator) -> None:
    """A confident model's small probabilities (1e-9 vs 1e-7) must keep their order in the stored report: a reviewer's
    ROC curve and AUROC are recomputed from the file and must equal the ones measured in memory."""
    n, k = 300, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), y] += 3.0
    probs = np.exp(6.0 * logits)  # temperature 1/6: most off-class probabilities far below 1e-6
    probs /= probs.sum(1, keepdims=True)
    assert (probs < 5e-7).mean() > 0.3
    rep = EvalReport.build("m", "test", [f"c{i}" for i in range(k)], y, probs, None, None, None, n_boot=10)
    rep.save(tmp_path / "r.json")
    back = EvalReport.load(tmp_path / "r.json")
    in_memory = roc_auc_score(y, probs, multi_class="ovr")
    assert compute_metrics(back.y_true, back.probs, None, None)["auroc"] == pytest.approx(in_memory, abs=1e-12)
    assert back.metrics["auroc"] == pytest.approx(in_memory, abs=1e-12)
