"""The model card (medimg.ui.model_card): how a model was made, on the dashboard and in the reviewer's report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from apptest_helpers import assert_clean

from medimg.spec import ModelSpec, load_spec
from medimg.ui.model_card import model_card_rows

REPO = Path(__file__).resolve().parents[2]


def _card(spec) -> dict[str, str]:  # noqa: ANN001
    rows = model_card_rows(spec)
    assert len(rows["Item"]) == len(rows["Value"]) == len(set(rows["Item"]))
    return dict(zip(rows["Item"], rows["Value"], strict=True))


def test_card_of_a_shipped_pretrained_model_gives_its_provenance() -> None:
    spec = load_spec(REPO / "weights" / "cric_cervix_mobilenet_v2_128.json")
    card = _card(spec)
    tr = spec.training
    assert card["Architecture"] == "mobilenet_v2"
    assert card["Classes"] == "NILM, ASC-US, LSIL, ASC-H, HSIL, SCC"
    assert "IMAGENET1K_V1" in card["Initial weights"] and tr["initial_weights"]["sha256"][:12] in card["Initial weights"]
    assert card["Network input"].startswith("128 x 128 px, 3 channels")
    assert card["Split sizes (images)"] == ", ".join(f"{k} {v:,}" for k, v in tr["n"].items())
    assert card["Loss"] == ("cross-entropy weighted by inverse class frequency; + 1.0 x the true Bethesda grade's "
                            "negative log-likelihood")  # the shipped model's grade-aware loss (--grade-weight 1)
    assert "backbone at 0.3 x" in card["Optimiser"] and "first 1 epoch head only" in card["Optimiser"]
    assert card["Epochs"].startswith(f"{tr['epochs_run']} run; weights of epoch {tr['best_epoch']}")
    assert card["Grad-CAM layer"] == f"{spec.cam_layer} (4 x 4 grid)"
    assert f"temperature {spec.temperature:.3f}" in card["Calibration"]
    assert spec.sha256[:12] in card["Weights file"]
    assert "/work" not in json.dumps(card) and "/home" not in json.dumps(card)  # no machine's paths


def test_card_says_scratch_and_the_extra_losses() -> None:
    spec = load_spec(REPO / "weights" / "cric_cervix_mobilenet_v2_128.json")
    tr = dict(spec.training, initial_weights=None,
              grade_supervision={"weight": 0.5, "grades": ["NILM", "low-grade", "high-grade"]},
              config=dict(spec.training["config"], pretrained=None, balanced_sampling=True))
    card = _card(replace(spec, training=tr, temperature=1.0))
    assert card["Initial weights"] == "random (trained from scratch)"
    assert card["Loss"] == ("cross-entropy, class-balanced sampling; + 0.5 x the true Bethesda grade's negative "
                            "log-likelihood")
    assert "backbone" not in card["Optimiser"]
    assert card["Calibration"].startswith("temperature 1 ")


def test_card_of_a_spec_without_training_record_still_describes_the_network(tiny_spec_path: Path) -> None:
    spec = replace(load_spec(tiny_spec_path), training={})
    card = _card(spec)
    assert set(card) >= {"Architecture", "Classes", "Network input", "Normalisation", "Calibration", "Grad-CAM layer"}
    assert "Initial weights" not in card and "Command" not in card  # nothing claimed that the spec does not say


def test_dashboard_shows_the_model_card(make_app) -> None:
    at = make_app("pages/dashboard.py").run()
    at.sidebar.selectbox(key="medimg.model_picker").set_value("tiny_smallcnn.json").run()
    assert_clean(at)
    assert any(e.label == "Model card: how this model was made" for e in at.expander)
    card = next(dict(zip(t.value["Item"], t.value["Value"], strict=True)) for t in at.table
                if "Item" in t.value.columns)
    assert card["Architecture"] == "smallcnn" and card["Classes"] == "normal, pneumonia"
    assert card["Grad-CAM layer"] == "features.conv3"


def test_reviewer_report_carries_the_model_card() -> None:
    from medimg.evaluate import EvalReport
    from medimg.ui.report_review import build_html
    from medimg.ui.resources import ModelOption

    option = ModelOption(path=REPO / "weights" / "busi_mobilenet_v2_288.json",
                         spec=load_spec(REPO / "weights" / "busi_mobilenet_v2_288.json"))
    doc = build_html(option, EvalReport.load(option.eval_path)).decode("utf-8")
    assert "<h2>Model card: how this model was made</h2>" in doc
    assert option.spec.training["initial_weights"]["sha256"][:12] in doc and option.spec.sha256[:12] in doc
    assert "Same recipe, other seeds" in doc and "this network, seed 1: 0.904 / 0.974" in doc


def test_seed_spread_places_the_network_among_its_recipe_seeds() -> None:
    from medimg.ui.model_card import seed_spread

    rec = {"split": "test", "seeds": {"0": {"accuracy": 0.80, "auroc": 0.90}, "1": {"accuracy": 0.90, "auroc": 0.95},
                                      "2": {"accuracy": 0.85, "auroc": 0.97}}}
    text = seed_spread(rec, 1)
    # mean 0.85, sample SD 0.05 (ddof 1); AUROC mean 0.94, SD sqrt(((-.04)^2 + .01^2 + .03^2) / 2) = 0.036
    assert text.startswith("test accuracy 0.850 ± 0.050 (0.800-0.900), AUROC 0.940 ± 0.036 (0.900-0.970) "
                           "over seeds 0, 1, 2")
    assert text.endswith("this network, seed 1: 0.900 / 0.950, the highest accuracy of the 3")
    assert seed_spread(rec, 0).endswith("seed 0: 0.800 / 0.900, the lowest accuracy of the 3")
    assert seed_spread(rec, 2).endswith("seed 2: 0.850 / 0.970, accuracy rank 2 of the 3")
    assert "this network" not in seed_spread(rec, 7)  # a seed that is not recorded is not named
    tied = {"seeds": {"0": {"accuracy": 1.0, "auroc": 1.0}, "1": {"accuracy": 1.0, "auroc": 1.0}}}
    assert seed_spread(tied, 0).endswith("the highest accuracy of the 2 (tied with 1 other)")
    # nothing is claimed from fewer than two usable runs or a malformed record
    assert seed_spread({"seeds": {"0": {"accuracy": 0.9, "auroc": 0.95}}}, 0) is None
    assert seed_spread({"seeds": {"0": {"accuracy": 0.9}, "1": {"accuracy": float("nan"), "auroc": 0.9}}}, 0) is None
    assert seed_spread(None) is None and seed_spread({"seeds": []}) is None


def _shipped_with(record: str) -> list[tuple[ModelSpec, dict]]:
    """(spec, spec.metrics[record]) of every shipped model whose spec carries that record."""
    specs = [load_spec(p.with_suffix(".json")) for p in sorted((REPO / "weights").glob("*.safetensors"))]
    return [(spec, spec.metrics[record]) for spec in specs if record in spec.metrics]


def test_card_of_each_recorded_shipped_model_matches_its_own_test_report() -> None:
    recorded = []
    for spec, rec in _shipped_with("recipe_seeds"):
        recorded.append(spec.name)
        own = rec["seeds"][str(spec.training["seed"])]  # the shipped seed is one of the recorded runs ...
        assert own["accuracy"] == spec.metrics["test"]["accuracy"] and own["auroc"] == spec.metrics["test"]["auroc"]
        card = _card(spec)  # ... and the card says so
        assert f"this network, seed {spec.training['seed']}: {own['accuracy']:.3f}" in card["Same recipe, other seeds"]
    assert {"busi_mobilenet_v2_288", "brain_mri_mobilenet_v2_224", "head_ct_mobilenet_v2_224"} <= set(recorded)


def test_cv_estimate_states_the_recipes_out_of_fold_skill() -> None:
    from medimg.ui.model_card import cv_estimate

    rec = {"folds": 5, "kind": "stratified", "over": "official training + validation images (the test split in no fold)",
           "per_fold": {"accuracy": [0.853, 0.031], "auroc": [0.9042, 0.0271]},
           "pooled": {"0": {"accuracy": 0.8526, "auroc": 0.9051, "n": 624}}}
    assert cv_estimate(rec) == (
        "5-fold stratified cross-validation of this recipe over the 624 official training + validation images (the "
        "test split in no fold): out-of-fold accuracy 0.853, AUROC 0.905 (seed 0); per fold accuracy 0.853 ± 0.031, "
        "AUROC 0.904 ± 0.027 (mean ± sample SD over 5 runs)")
    two = {**rec, "pooled": {"0": {"accuracy": 0.85, "auroc": 0.90, "n": 624},
                             "1": {"accuracy": 0.87, "auroc": 0.92, "n": 624}}}
    text = cv_estimate(two)  # two seeds: mean ± sample SD of the pooled figures, and 10 (fold, seed) runs
    assert "out-of-fold accuracy 0.860 ± 0.014, AUROC 0.910 ± 0.014 over seeds 0, 1" in text
    assert text.endswith("over 10 runs)")
    # nothing is claimed from a malformed record; a missing per-fold summary only drops that clause
    assert cv_estimate(None) is None and cv_estimate({"folds": 5, "pooled": {}}) is None
    assert cv_estimate({**rec, "pooled": {"0": {"accuracy": float("nan"), "auroc": 0.9}}}) is None
    assert cv_estimate({**rec, "folds": "5"}) is None
    assert "per fold" not in cv_estimate({**rec, "per_fold": {}})


def test_card_shows_the_cross_validated_row_only_when_recorded() -> None:
    spec = load_spec(REPO / "weights" / "busi_mobilenet_v2_288.json")
    assert "Same recipe, cross-validated" not in _card(replace(spec, metrics={
        k: v for k, v in spec.metrics.items() if k != "recipe_cv"}))
    rec = {"folds": 5, "kind": "grouped", "over": "images", "per_fold": {"accuracy": [0.9, 0.05], "auroc": [0.95, 0.02]},
           "pooled": {"0": {"accuracy": 0.9, "auroc": 0.95, "n": 200}}}
    card = _card(replace(spec, metrics={**spec.metrics, "recipe_cv": rec}))
    assert card["Same recipe, cross-validated"].startswith("5-fold grouped cross-validation of this recipe over the 200 images")


def test_card_of_each_cross_validated_shipped_model_states_its_folds() -> None:
    """Integration: the shipped specs that carry a cross-validation record (bench/record_cv.py) show it, and the
    out-of-fold predictions cover exactly the images dealt into folds (stratified: training + validation, the
    test split in no fold; grouped: every image)."""
    recorded = []
    for spec, rec in _shipped_with("recipe_cv"):
        recorded.append(spec.name)
        n = spec.training["n"]
        dealt = n["train"] + n["val"] + (n["test"] if rec["kind"] == "grouped" else 0)
        assert {m["n"] for m in rec["pooled"].values()} == {dealt}
        assert 0.5 < min(m["auroc"] for m in rec["pooled"].values()) <= 1.0
        row = _card(spec)["Same recipe, cross-validated"]
        assert row.startswith(f"{rec['folds']}-fold {rec['kind']} cross-validation of this recipe over the {dealt} ")
    assert {"breastmnist_mobilenet_v2_224", "head_ct_mobilenet_v2_224"} <= set(recorded)
