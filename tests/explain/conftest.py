"""Fixtures of the explain tests: the tiny model as a Predictor, a small CNN trained on a planted signal, helpers.

The planted task: 32 x 32 noise images; class "square" has an 8 x 8 brighter square at a random place, class
"plain" has none. A SmallCNN learns it in ~80 steps (label smoothing keeps probabilities below 1 so deletion
and insertion curves are informative), so Grad-CAM has something real to find: the square.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from explain_helpers import PLANT_SIZE, Planted, make_planted

from medimg.spec import ModelSpec, PreprocessConfig


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: these tests run many tiny forward passes (faster, and no oversubscription when
    several threads run CAMs at once on a small machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_spec_path: Path):
    """The shared tiny model (seeded, untrained SmallCNN, 64 x 64) as a CPU Predictor."""
    from medimg.predict import Predictor

    return Predictor.from_spec(tiny_spec_path, device="cpu")


@pytest.fixture
def tiny_images(rng: np.random.Generator) -> list[np.ndarray]:
    """Eight seeded synthetic (64, 64, 1) images in [0, 1] with a few bright blobs each."""
    out = []
    rr, cc = np.mgrid[0:64, 0:64]
    for _ in range(8):
        img = rng.normal(0.4, 0.08, (64, 64))
        for _ in range(3):
            r0, c0 = rng.integers(8, 56, 2)
            img += 0.4 * np.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * rng.uniform(2, 6) ** 2))
        out.append(np.clip(img, 0, 1).astype(np.float32)[..., None])
    return out


@pytest.fixture(scope="session")
def planted() -> Planted:
    """A SmallCNN trained for a few seconds on the planted-square task, wrapped in a CPU Predictor."""
    from medimg.models import create_model
    from medimg.predict import Predictor

    config = PreprocessConfig(input_size=(PLANT_SIZE, PLANT_SIZE), in_chans=1, mean=(0.5,), std=(0.25,))
    x, y, _ = make_planted(np.random.default_rng(0), 512)
    xt = torch.from_numpy(((x - 0.5) / 0.25)[:, None])
    yt = torch.from_numpy(y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = create_model("smallcnn", 1, 2)
            opt = torch.optim.Adam(model.parameters(), 3e-3)
            g = torch.Generator().manual_seed(0)
            model.train()
            for _ in range(80):
                i = torch.randint(0, len(x), (32,), generator=g)
                loss = torch.nn.functional.cross_entropy(model(xt[i]), yt[i], label_smoothing=0.3)
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    spec = ModelSpec(name="planted_square", title="Planted square", architecture="smallcnn",
                     labels=("plain", "square"), preprocess=config, positive_label=1, cam_layer="features.conv3")
    pred = Predictor(model, spec, device="cpu")
    xv, yv, bv = make_planted(np.random.default_rng(1), 40)
    acc = (pred.predict_proba(((xv - 0.5) / 0.25)[:, None].astype(np.float32)).argmax(1) == yv).mean()
    assert acc >= 0.95, f"the planted-signal model did not learn its task (accuracy {acc:.2f})"
    return Planted(pred, xv, yv, bv, config)
