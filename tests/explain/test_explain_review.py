"""Reviewer checks on a model trained on a planted signal: CAMs find it, are faithful (deletion/insertion), and
depend on the learned weights (randomisation sanity check, Adebayo et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_helpers import in_box

from medimg import explain as ex


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "gradcam++", "layercam"])
def test_cam_peak_lies_inside_the_planted_square(planted, method: str) -> None:
    hits = []
    for pre, box in planted.positives(10):
        r = ex.cam(planted.predictor, pre, target="square", method=method)
        hits.append(in_box(np.unravel_index(np.argmax(r.heatmap), r.heatmap.shape), box))
    assert np.mean(hits) >= 0.9, f"{method}: peak inside the square for {hits}"


def test_randomisation_sanity_check(planted) -> None:
    """Grad-CAM of the trained model differs clearly from Grad-CAM of the same network with its top layers
    randomised; Eigen-CAM (class-agnostic, driven by the activations of lower layers) barely changes, which is
    what the check exists to reveal."""
    pres = [pre for pre, _ in planted.positives(6)]
    grad = [ex.randomisation_sanity(planted.predictor, p, method="gradcam", target=1) for p in pres]
    eigen = [ex.randomisation_sanity(planted.predictor, p, method="eigencam", target=1) for p in pres]
    assert np.median(grad) < 0.5 and max(grad) < 0.7, grad
    assert np.median(eigen) > 0.8, eigen
    top = ex.randomisation_sanity(planted.predictor, pres[0], method="gradcam", mode="top")
    assert -1 <= top <= 1
    with pytest.raises(ex.ExplainError, match="mode"):
        ex.randomisation_sanity(planted.predictor, pres[0], mode="bottom")


def test_randomised_copy_changes_only_the_chosen_layers(planted) -> None:
    model = planted.predictor.model
    x = planted.positives(1)[0][0].model_input[None]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    casc = ex.randomised_copy(planted.predictor, "features.conv3", x, mode="cascading")
    top = ex.randomised_copy(planted.predictor, "features.conv3", x, mode="top")
    changed = {k for k, v in casc.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"features.conv3.weight", "features.conv3.bias", "classifier.1.weight", "classifier.1.bias",
                       "classifier.4.weight", "classifier.4.bias"}
    assert {k for k, v in top.state_dict().items() if not torch.equal(v, before[k])} == {
        "classifier.4.weight", "classifier.4.bias"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert ex.hook_count(model) == 0 and ex.hook_count(casc) == 0


def test_deletion_insertion_faithfulness(planted) -> None:
    """Deleting the pixels Grad-CAM ranks first destroys the evidence faster than deleting pixels in a random
    order, and deletion AUC < insertion AUC (Petsiuk et al. 2018)."""
    rng = np.random.default_rng(0)
    d_cam, i_cam, d_rand = [], [], []
    for pre, _ in planted.positives(6):
        r = ex.cam(planted.predictor, pre, target="square")
        di = ex.deletion_insertion(planted.predictor, pre, r, steps=16)
        assert di["target"] == 1
        c = di["curves"]
        assert c["fraction"].shape == c["deletion"].shape == c["insertion"].shape == (17,)
        assert c["fraction"][0] == 0 and c["fraction"][-1] == 1
        assert 0 <= di["deletion_auc"] <= 1 and 0 <= di["insertion_auc"] <= 1
        d_cam.append(di["deletion_auc"])
        i_cam.append(di["insertion_auc"])
        d_rand.append(ex.deletion_insertion(planted.predictor, pre, rng.random((32, 32)), target=1,
                                            steps=16)["deletion_auc"])
    assert np.mean(d_cam) < np.mean(i_cam)
    assert all(a < b for a, b in zip(d_cam, i_cam, strict=True))
    assert np.mean(d_cam) < 0.8 * np.mean(d_rand), (d_cam, d_rand)


def test_deletion_insertion_validation(planted) -> None:
    pre = planted.positives(1)[0][0]
    with pytest.raises(ex.ExplainError, match="heatmap"):
        ex.deletion_insertion(planted.predictor, pre, np.zeros((8, 8)))
    with pytest.raises(ex.ExplainError, match="steps"):
        ex.deletion_insertion(planted.predictor, pre, np.zeros((32, 32)), steps=0)


def test_spearman() -> None:
    a = np.arange(16.0).reshape(4, 4)
    assert ex.spearman(a, a) == pytest.approx(1.0)
    assert ex.spearman(a, -a) == pytest.approx(-1.0)
    assert ex.spearman(a, np.zeros_like(a)) == 0.0
