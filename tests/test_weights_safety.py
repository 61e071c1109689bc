"""Weights are untrusted input: only safetensors, sha256 checked first, nothing executed, memory bounded."""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
import struct
import tokenize
import tracemalloc
from pathlib import Path

import pytest
import torch

from medimg.errors import SpecError, WeightsError
from medimg.models import create_model, load_model, load_state_dict_file, save_weights, sha256_bytes
from medimg.models import weights as models
from medimg.spec import ModelSpec, PreprocessConfig, load_spec, save_spec

REPO = Path(__file__).resolve().parents[1]


class _Marker:
    """Unpickling this creates a file: proof that the pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def _pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"conv.weight": _Marker(marker)}, protocol=2)


def _spec_for(path: Path, arch: str = "smallcnn", sha: str | None = None) -> ModelSpec:
    return ModelSpec(name=path.stem, title="t", architecture=arch, labels=("a", "b"),
                     preprocess=PreprocessConfig(input_size=(32, 32)), sha256=sha or sha256_bytes(path.read_bytes()))


def _load_via_spec(path: Path, arch: str = "smallcnn") -> None:
    load_model(_spec_for(path, arch), weights_dir=path.parent)


def test_valid_file_loads(tiny_spec_path: Path) -> None:
    model, spec = load_model(tiny_spec_path)
    assert not model.training and spec.name == "tiny_smallcnn"


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt", ".pkl", ".safetensors.pt", ""])
def test_only_safetensors_suffix_loads(tiny_model_dir: Path, tmp_path: Path, suffix: str) -> None:
    src = tiny_model_dir / "tiny_smallcnn.safetensors"
    dst = tmp_path / f"w{suffix}"
    shutil.copy(src, dst)
    with pytest.raises(WeightsError, match="only .safetensors"):
        load_state_dict_file(dst)


def test_sha256_mismatch_fails_closed_before_parsing(tiny_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for p in tiny_model_dir.iterdir():
        shutil.copy(p, tmp_path / p.name)
    w = tmp_path / "tiny_smallcnn.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01  # one bit in the last tensor
    w.write_bytes(bytes(data))
    parsed: list[str] = []
    monkeypatch.setattr(models, "_check_header", lambda *a: parsed.append("header"))
    monkeypatch.setattr(models, "st_load", lambda *a: parsed.append("load"))
    with pytest.raises(WeightsError, match="sha256"):
        load_model(tmp_path / "tiny_smallcnn.json")
    assert parsed == []
    # an empty sha256 in the spec is refused too
    spec = load_spec(tmp_path / "tiny_smallcnn.json")
    save_spec(spec.replace(sha256=""), tmp_path / "tiny_smallcnn.json")
    with pytest.raises(SpecError, match="sha256"):
        load_model(tmp_path / "tiny_smallcnn.json")


def test_pickle_renamed_safetensors_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "EXECUTED"
    payload = _pickle_payload(marker)
    # sanity: the payload really would run if unpickled
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    w = tmp_path / "evil.safetensors"
    w.write_bytes(payload)
    with pytest.raises(WeightsError):
        load_state_dict_file(w, sha256=sha256_bytes(payload))
    with pytest.raises(WeightsError):
        _load_via_spec(w)
    # a torch.save zip (pickle inside) renamed .safetensors
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    z = tmp_path / "zip.safetensors"
    z.write_bytes(buf.getvalue())
    with pytest.raises(WeightsError):
        _load_via_spec(z)
    assert not marker.exists()


def test_truncated_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = (tiny_model_dir / "tiny_smallcnn.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for cut in (0, 1, 7, 8, 9, 8 + n // 2, 8 + n, 8 + n + 1, len(data) // 2, len(data) - 1):
        w = tmp_path / f"cut{cut}.safetensors"
        w.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            _load_via_spec(w)


def test_random_bytes(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for i, size in enumerate((0, 3, 64, 4096, 200_000)):
        w = tmp_path / f"r{i}.safetensors"
        w.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        with pytest.raises(WeightsError):
            _load_via_spec(w)


def _bounded(fn) -> int:  # noqa: ANN001
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_huge_declared_header_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    for declared in (2**63, 2**40, 3 * 2**30, models.MAX_HEADER_BYTES + 1):
        w = tmp_path / "huge.safetensors"
        w.write_bytes(struct.pack("<Q", declared) + b'{"a": 1}' + b"\0" * 1024)

        def load(w: Path = w) -> None:
            with pytest.raises(WeightsError):
                _load_via_spec(w)

        assert _bounded(load) < 16 * 2**20


def test_header_declaring_tensors_beyond_the_file(tmp_path: Path) -> None:
    cases = [
        {"conv.weight": {"dtype": "F32", "shape": [1_000_000], "data_offsets": [0, 4_000_000]}},
        {"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 16]}},  # shape vs offsets mismatch
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}},  # reversed offsets
        {"w": {"dtype": "NOPE", "shape": [4], "data_offsets": [0, 16]}},
        {"w": "not a tensor"},
    ]
    for i, header in enumerate(cases):
        h = json.dumps(header).encode()
        w = tmp_path / f"h{i}.safetensors"
        w.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 16)

        def load(w: Path = w) -> None:
            with pytest.raises(WeightsError):
                _load_via_spec(w)

        assert _bounded(load) < 16 * 2**20, header
    # a JSON header that is not an object
    h = b"[1, 2, 3]"
    w = tmp_path / "list.safetensors"
    w.write_bytes(struct.pack("<Q", len(h)) + h)
    with pytest.raises(WeightsError):
        _load_via_spec(w)


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = tmp_path / "big.safetensors"
    w.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(models, "MAX_WEIGHTS_BYTES", 1024)
    with pytest.raises(WeightsError, match="larger than"):
        load_state_dict_file(w)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="missing"):
        load_state_dict_file(tmp_path / "nope.safetensors")
    with pytest.raises(SpecError, match="missing"):
        load_model(tmp_path / "nope.json")


def test_wrong_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(name="r18", title="t", architecture="resnet18", labels=("a", "b"),
                     preprocess=PreprocessConfig(input_size=(32, 32)))
    spec = save_weights(create_model("resnet18", 1, 2), spec, tmp_path)
    # resnet18 weights served with a smallcnn spec
    save_spec(spec.replace(architecture="smallcnn"), tmp_path / "r18.json")
    with pytest.raises(WeightsError, match="does not fit architecture"):
        load_model(tmp_path / "r18.json")
    # same architecture, different number of classes (mis-shaped head)
    save_spec(spec.replace(labels=("a", "b", "c")), tmp_path / "r18.json")
    with pytest.raises(WeightsError, match="does not fit"):
        load_model(tmp_path / "r18.json")
    # different input channels (mis-shaped first convolution)
    save_spec(spec.replace(preprocess=PreprocessConfig(input_size=(32, 32), in_chans=3, mean=(0.5,) * 3,
                                                       std=(0.25,) * 3)), tmp_path / "r18.json")
    with pytest.raises(WeightsError, match="does not fit"):
        load_model(tmp_path / "r18.json")
    # unknown architecture name
    save_spec(spec.replace(architecture="vit_huge"), tmp_path / "r18.json")
    with pytest.raises(SpecError, match="Unknown architecture"):
        load_model(tmp_path / "r18.json")


def _python_files() -> list[Path]:
    files = sorted((REPO / "medimg").rglob("*.py")) + sorted((REPO / "pages").rglob("*.py"))
    if (REPO / "app.py").exists():
        files.append(REPO / "app.py")
    return files


def test_no_unsafe_deserialisation_in_the_code() -> None:
    """No torch.load, pickle, joblib (or friends) in medimg/, pages/, app.py; comments and docstrings aside."""
    banned_names = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal",
                    "allow_pickle"}
    offenders = []
    for path in _python_files():
        toks = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
                if t.type in (tokenize.NAME, tokenize.OP)]
        for i, t in enumerate(toks):
            if t.type == tokenize.NAME and t.string in banned_names:
                offenders.append(f"{path.relative_to(REPO)}:{t.start[0]}: {t.string}")
            if (t.string == "load" and i >= 2 and toks[i - 1].string == "." and toks[i - 2].string in ("torch", "jit")):
                offenders.append(f"{path.relative_to(REPO)}:{t.start[0]}: torch.load")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch") and any(
                    a.name in ("load", "_load") for a in node.names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: from {node.module} import load")
    assert not offenders, offenders
    assert len(_python_files()) >= 10  # the scan really saw the package
