"""Shared fixtures: the data location, a tiny registered model with a spec, synthetic images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medimg.catalog import data_root
from medimg.spec import ModelSpec, PreprocessConfig

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test process: on a small shared CPU, more threads than free cores makes small
    forward passes tens of times slower (oversubscription)."""
    import torch

    torch.set_num_threads(1)
SHIPPED = REPO / "weights" / "kermany_cxr_mobilenet_v2_224.json"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $MEDIMG_DATA); skips when absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set MEDIMG_DATA)")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained SmallCNN saved as safetensors + spec (64 x 64 grayscale, normal/pneumonia)."""
    import torch

    from medimg.models import create_model, save_weights

    torch.manual_seed(0)
    model = create_model("smallcnn", 1, 2).eval()
    spec = ModelSpec(name="tiny_smallcnn", title="Tiny test CNN", architecture="smallcnn",
                     labels=("normal", "pneumonia"),
                     preprocess=PreprocessConfig(input_size=(64, 64), in_chans=1, mean=(0.5,), std=(0.25,)),
                     intended_use="Unit tests only.", modalities=("CR", "DX"), body_parts=("CHEST",),
                     positive_label=1, temperature=1.5, cam_layer="features.conv3",
                     training={"config": {"task": "kermany-cxr"}})
    out = tmp_path_factory.mktemp("tiny_model")
    save_weights(model, spec, out)
    return out


@pytest.fixture(scope="session")
def tiny_spec_path(tiny_model_dir: Path) -> Path:
    return tiny_model_dir / "tiny_smallcnn.json"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def shipped_spec() -> Path:
    """The shipped chest X-ray model's spec; skips when the weights are not there yet."""
    if not SHIPPED.exists():
        pytest.skip("shipped weights not present")
    return SHIPPED


@pytest.fixture
def fast_training(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread, and 20 bootstrap resamples instead of 1,000 in test reports (training tests)."""
    import torch

    from medimg.evaluate import EvalReport

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    build = EvalReport.build.__func__
    monkeypatch.setattr(EvalReport, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "n_boot": 20})))
    yield
    torch.set_num_threads(n)
