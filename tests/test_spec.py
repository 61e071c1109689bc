"""ModelSpec: JSON round trip, invalid values and missing fields give SpecError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg.errors import SpecError
from medimg.spec import ModelSpec, PreprocessConfig, load_spec, save_spec


def _spec(**kw) -> ModelSpec:
    base = dict(name="m", title="Model", architecture="smallcnn", labels=("normal", "pneumonia"),
                preprocess=PreprocessConfig(input_size=(64, 96), in_chans=3, window="full range", geometry="pad",
                                            intensity="percentile", mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)),
                intended_use="tests", modalities=("CR", "DX"), body_parts=("CHEST",), positive_label=1,
                temperature=1.7, threshold=0.3, cam_layer="features.conv3", sha256="ab" * 32,
                training={"seed": 0, "nested": {"a": [1, 2]}}, metrics={"test": {"auroc": 0.9}},
                gate={"distribution": {"threshold": 3.0}})
    base.update(kw)
    return ModelSpec(**base)


def test_round_trip_file(tmp_path: Path) -> None:
    spec = _spec()
    save_spec(spec, tmp_path / "m.json")
    back = load_spec(tmp_path / "m.json")
    assert back == spec
    assert isinstance(back.labels, tuple) and isinstance(back.preprocess.input_size, tuple)
    assert back.num_classes == 2
    # the file is plain JSON a human can read
    raw = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert raw["preprocess"]["input_size"] == [64, 96] and raw["labels"] == ["normal", "pneumonia"]


def test_round_trip_dict_and_defaults() -> None:
    spec = ModelSpec(name="m", title="t", architecture="resnet18", labels=("a", "b", "c"),
                     preprocess=PreprocessConfig())
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.temperature == 1.0 and spec.threshold is None and spec.gate == {} and spec.sha256 == ""
    # unknown keys (from a newer writer) are ignored, not fatal
    d = spec.to_dict()
    d["future_field"] = 1
    assert ModelSpec.from_dict(d) == spec


def test_spec_is_frozen_and_replace_copies() -> None:
    spec = _spec()
    with pytest.raises(AttributeError):
        spec.temperature = 2.0  # type: ignore[misc]
    other = spec.replace(temperature=2.0)
    assert other.temperature == 2.0 and spec.temperature == 1.7


@pytest.mark.parametrize("changes, match", [
    ({"labels": ("only",)}, "two labels"),
    ({"labels": ()}, "two labels"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"positive_label": 2}, "positive_label"),
    ({"positive_label": -1}, "positive_label"),
    ({"threshold": 0.0}, "threshold"),
    ({"threshold": 1.0}, "threshold"),
    ({"threshold": 1.5}, "threshold"),
])
def test_invalid_spec_values(changes: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        _spec(**changes)
    d = _spec().to_dict()
    d.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    with pytest.raises(SpecError):
        ModelSpec.from_dict(d)


@pytest.mark.parametrize("changes, match", [
    ({"input_size": (4, 64)}, "too small"),
    ({"in_chans": 2, "mean": (0.5, 0.5), "std": (0.2, 0.2)}, "in_chans"),
    ({"geometry": "squash"}, "geometry"),
    ({"intensity": "gamma"}, "intensity"),
    ({"mean": (0.5, 0.5)}, "one value per input channel"),
    ({"std": (0.0,)}, "positive"),
    ({"std": (-0.2,)}, "positive"),
])
def test_invalid_preprocess_values(changes: dict, match: str) -> None:
    base = dict(input_size=(64, 64), in_chans=1, mean=(0.5,), std=(0.25,))
    base.update(changes)
    with pytest.raises(SpecError, match=match):
        PreprocessConfig(**base)


@pytest.mark.parametrize("path", [("name",), ("title",), ("architecture",), ("labels",), ("preprocess",),
                                  ("preprocess", "input_size"), ("preprocess", "mean"), ("preprocess", "std")])
def test_missing_fields(path: tuple[str, ...]) -> None:
    d = _spec().to_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(SpecError):
        ModelSpec.from_dict(d)


@pytest.mark.parametrize("key, value", [("preprocess", "not a dict"), ("preprocess", None),
                                        ("temperature", "warm"), ("labels", None),
                                        ("preprocess.input_size", [128]), ("preprocess.input_size", "big")])
def test_wrong_types(key: str, value: object) -> None:
    d = _spec().to_dict()
    if "." in key:
        a, b = key.split(".")
        d[a][b] = value
    else:
        d[key] = value
    with pytest.raises(SpecError):
        ModelSpec.from_dict(d)


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="missing"):
        load_spec(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SpecError, match="not a JSON object"):
        load_spec(tmp_path / "list.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError):
        load_spec(tmp_path / "bin.json")
    (tmp_path / "empty.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SpecError):
        load_spec(tmp_path / "empty.json")


@pytest.mark.parametrize("labels", ["normal", ["a", "a"]])
def test_labels_must_be_distinct_strings(labels: object) -> None:
    d = _spec().to_dict()
    d["labels"] = labels
    d["positive_label"] = None
    with pytest.raises(SpecError):
        ModelSpec.from_dict(d)


def test_spec_without_task_is_a_spec_error_not_chest_xrays() -> None:
    """A spec that names no training task cannot be evaluated or gate-fitted: SpecError, no fallback task."""
    from medimg.errors import SpecError
    from medimg.spec import ModelSpec, PreprocessConfig, spec_task

    spec = ModelSpec(name="no_task", title="t", architecture="smallcnn", labels=("a", "b"),
                     preprocess=PreprocessConfig(input_size=(32, 32), in_chans=1, mean=(0.5,), std=(0.25,)))
    with pytest.raises(SpecError, match="names no training task"):
        spec_task(spec)
    assert spec_task(spec.replace(training={"config": {"task": "busi"}})) == "busi"
