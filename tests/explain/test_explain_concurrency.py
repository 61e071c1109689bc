"""The shared model is never hooked or changed; concurrent sessions get their own heat maps.

RELIABILITY.md: "With several threads computing CAMs and another predicting on the same cached model, every heat
map must equal its serial reference (atol 1e-4)"; "After 1,000 predict+CAM calls: parameters unchanged,
model.training is False, no hooks left"; soak: memory growth < 10 % after warm-up.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from explain_helpers import make_pre
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from medimg import explain as ex
from medimg.predict import Predictor


@pytest.fixture
def fresh_predictor(planted) -> Predictor:
    """The planted-square model (32 x 32, trained: its maps have structure) as a Predictor with its own model
    object, so pool settings and the checks on the shared model concern this test only."""
    return Predictor(copy.deepcopy(planted.predictor.model), planted.predictor.spec, device="cpu")


@pytest.fixture
def images(planted) -> list[np.ndarray]:
    """Eight (32, 32) images in [0, 1], four with a square."""
    return [planted.images[i] for i in range(8)]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert ex.hook_count(model) == 0, "hooks left on the shared model"
    assert model.training is False
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
               for m in model.modules())


def test_many_calls_leave_shared_model_untouched(fresh_predictor, images) -> None:
    """RELIABILITY: after 1,000 predict+CAM calls the shared model is unchanged, in eval mode, with no hooks."""
    pred = fresh_predictor
    before = _snapshot(pred.model)
    req = [p.requires_grad for p in pred.model.parameters()]
    cfg = pred.spec.preprocess
    pres = [make_pre(i, cfg) for i in images]
    methods = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigencam"]
    for i in range(1000):
        p = pres[i % len(pres)]
        pred.predict_proba(p.model_input[None])
        ex.cam(pred, p, target=i % 2, method=methods[i % len(methods)])
    ex.feature_maps(pred, pres[0], "features.conv2")
    ex.occlusion(pred, pres[0], patch=32, stride=32)
    ex.randomisation_sanity(pred, pres[0])
    _assert_untouched(pred.model, before)
    assert [p.requires_grad for p in pred.model.parameters()] == req
    assert ex.replica_pool(pred).created <= ex.replica_pool(pred).max_replicas


def test_concurrent_cams_equal_serial_reference(fresh_predictor, images) -> None:
    """Four threads compute CAMs of different images and classes (more threads than replicas, so some queue)
    while a fifth predicts on the same shared model: every map equals its serial reference."""
    pred = fresh_predictor
    ex.replica_pool(pred, max_replicas=3)
    cfg = pred.spec.preprocess
    pres = [make_pre(i, cfg) for i in images]
    jobs = [(i, t, m) for i in range(len(pres)) for t, m in ((0, "gradcam"), (1, "hirescam"), (None, "layercam"))]
    ref = {(i, t, m): ex.cam(pred, pres[i], target=t, method=m).heatmap for i, t, m in jobs}
    ref_probs = pred.predict_proba(np.stack([p.model_input for p in pres]))
    before = _snapshot(pred.model)

    n_cam = 4
    start = threading.Barrier(n_cam + 1)
    done = threading.Event()
    errors: list[BaseException] = []
    results: list[tuple[tuple, np.ndarray]] = []
    lock = threading.Lock()
    predictions = [0]

    def cam_worker(k: int) -> None:
        try:
            order = jobs[k::n_cam] + jobs[(k + 1) % n_cam :: n_cam]  # different jobs per thread, some shared
            start.wait()
            for _ in range(3):
                for job in order:
                    i, t, m = job
                    h = ex.cam(pred, pres[i], target=t, method=m).heatmap
                    with lock:
                        results.append((job, h))
        except BaseException as err:  # noqa: BLE001 - reported in the main thread
            errors.append(err)

    def predict_worker() -> None:
        try:
            start.wait()
            x = np.stack([p.model_input for p in pres])
            while not done.is_set():
                np.testing.assert_allclose(pred.predict_proba(x), ref_probs, atol=1e-6)
                predictions[0] += 1
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=cam_worker, args=(k,)) for k in range(n_cam)]
    predictor_thread = threading.Thread(target=predict_worker)
    for t in [*threads, predictor_thread]:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done.set()
    predictor_thread.join(timeout=30)
    assert not errors, errors
    assert predictions[0] > 0
    assert len(results) == 3 * sum(len(jobs[k::n_cam]) + len(jobs[(k + 1) % n_cam :: n_cam]) for k in range(n_cam))
    for job, h in results:
        np.testing.assert_allclose(h, ref[job], atol=1e-4, err_msg=f"map of {job} differs from its serial reference")
    _assert_untouched(pred.model, before)
    assert ex.replica_pool(pred).created <= 3


def test_busy_pool_gives_a_clear_error(fresh_predictor, images) -> None:
    pred = fresh_predictor
    pool = ex.replica_pool(pred, max_replicas=1)
    pre = make_pre(images[0], pred.spec.preprocess)
    with pool.borrow():
        with pytest.raises(ex.BusyError, match="busy"):
            ex.cam(pred, pre, timeout=0.05)
    assert ex.cam(pred, pre).heatmap.shape == (32, 32)


def test_cam_inside_inference_mode(fresh_predictor, images) -> None:
    """A caller inside ``torch.inference_mode()`` (as inference code often is) still gets a map; the replica
    made there holds normal tensors that can take part in the backward pass."""
    pre = make_pre(images[1], fresh_predictor.spec.preprocess)
    with torch.inference_mode():
        inside = ex.cam(fresh_predictor, pre, target=1).heatmap
        ex.randomisation_sanity(fresh_predictor, pre)
    np.testing.assert_array_equal(inside, ex.cam(fresh_predictor, pre, target=1).heatmap)


def test_dirty_replica_is_replaced(fresh_predictor) -> None:
    pool = ex.replica_pool(fresh_predictor, max_replicas=1)
    with pool.borrow() as rep:
        first = rep
        rep.features.conv3.register_forward_hook(lambda *a: None)  # an error path that leaked a hook
    with pool.borrow() as rep:
        assert rep is not first and ex.hook_count(rep) == 0
        assert all(not p.requires_grad for p in rep.parameters()) and not rep.training
    assert pool.created == 1
    assert ex.hook_count(fresh_predictor.model) == 0


def test_demo_naive_hooks_on_a_shared_model_mix_sessions(fresh_predictor, images) -> None:
    """Documented demonstration of the bug the replica pool prevents (deterministic, no threads needed).

    Two sessions each run pytorch-grad-cam *directly on the shared model*, interleaved as two server threads
    can be: A forward, B forward, A backward, B backward. Each GradCAM object's hooks fire for the other
    session's passes too, so A's activations get weighted with B's gradients: A receives a wrong map.
    """
    shared = fresh_predictor.model
    layer = shared.features.conv3
    cfg = fresh_predictor.spec.preprocess
    xa = torch.from_numpy(make_pre(images[0], cfg).model_input[None])
    xb = torch.from_numpy(make_pre(images[5], cfg).model_input[None])
    ref_a = ex.cam(fresh_predictor, xa[0].numpy(), target=1).heatmap

    a = GradCAM(model=shared, target_layers=[layer])
    b = GradCAM(model=shared, target_layers=[layer])
    try:
        assert ex.hook_count(shared) == 4  # two objects x (activation + gradient) hooks, on the shared model
        out_a = a.activations_and_grads(xa)  # session A: forward
        out_b = b.activations_and_grads(xb)  # session B: forward (A's hooks fire too)
        ClassifierOutputTarget(1)(out_a[0]).backward()  # session A: backward
        ClassifierOutputTarget(0)(out_b[0]).backward()  # session B: backward (A's gradient hook fires too)
        acts = [t.numpy() for t in a.activations_and_grads.activations]
        grads = [t.numpy() for t in a.activations_and_grads.gradients]
        naive = a.compute_cam_per_layer(xa, [ClassifierOutputTarget(1)], False)[0][0, 0]
    finally:
        a.activations_and_grads.release()
        b.activations_and_grads.release()
        shared.zero_grad(set_to_none=True)
    assert len(acts) == 2 and len(grads) == 2  # A collected B's activation and gradient as well
    assert not np.allclose(naive, ref_a, atol=1e-2), "naive hooking should have mixed the sessions"
    assert ex.hook_count(shared) == 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_soak_predict_and_cam(fresh_predictor, images) -> None:
    """Minutes of predict + CAM from two threads: resident memory grows < 10 % after warm-up, no hooks left.

    Duration: ``$MEDIMG_SOAK_S`` seconds (default 150).
    """
    pred = fresh_predictor
    before = _snapshot(pred.model)
    cfg = pred.spec.preprocess
    pres = [make_pre(i, cfg) for i in images]
    methods = ["gradcam", "hirescam", "gradcam++", "layercam", "eigencam"]
    duration = float(os.environ.get("MEDIMG_SOAK_S", "150"))
    warmup = min(20.0, duration / 5)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = [0, 0]

    def work(k: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                p = pres[i % len(pres)]
                pred.predict_proba(p.model_input[None])
                ex.cam(pred, p, target=i % 2, method=methods[(i + k) % len(methods)])
                if i % 50 == 0:
                    ex.feature_maps(pred, p, "features.conv3")
                i += 1
                counts[k] += 1
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    rss0 = _rss_bytes()
    time.sleep(duration - warmup)
    rss1 = _rss_bytes()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(counts) >= 1000, f"only {sum(counts)} predict+CAM calls ran"  # RELIABILITY: after 1,000 calls
    growth = (rss1 - rss0) / rss0
    assert growth < 0.10, f"RSS grew {growth:.1%} ({rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MB) after warm-up"
    _assert_untouched(pred.model, before)
