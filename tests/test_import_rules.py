"""DESIGN.md's import rules, checked on the source (AST, every import statement, nested ones too) and at
run time (a fresh interpreter imports the torch-free modules and must not have loaded torch)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "medimg"


def _imports(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (``import a.b`` and ``from a.b import c`` -> ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def _files(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = REPO / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else []))
    return out


def _violations(files: list[Path], banned: set[str]) -> list[str]:
    return [f"{f.relative_to(REPO)} imports {sorted(_imports(f) & banned)}" for f in files if _imports(f) & banned]


TORCH = {"torch", "torchvision", "pytorch_grad_cam"}


def test_io_and_preprocess_import_no_torch() -> None:
    files = _files("medimg/io", "medimg/preprocess.py")
    assert len(files) >= 3
    assert not _violations(files, TORCH)


def test_evaluate_and_viz_import_no_torch() -> None:
    files = _files("medimg/evaluate.py", "medimg/viz.py")
    assert files
    assert not _violations(files, TORCH)


def test_only_medimg_ui_imports_streamlit() -> None:
    files = [f for f in _files("medimg") if "ui" not in f.relative_to(PKG).parts[:1]]
    assert len(files) >= 10
    assert not _violations(files, {"streamlit"})


def test_pages_and_app_import_no_torch_pydicom_or_gradcam() -> None:
    files = _files("pages", "app.py")
    if not files:
        pytest.skip("no pages/ or app.py yet")
    assert not _violations(files, TORCH | {"pydicom", "pytorch_grad_cam", "cv2"})
    # pages reach the library only through medimg's public names and medimg.ui
    bad = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bad += [f"{f.relative_to(REPO)}: {m}" for m in mods
                    if m.startswith("medimg.") and not m.startswith("medimg.ui")]
    assert not bad, bad


def test_checker_catches_violations(tmp_path: Path) -> None:
    """The AST check sees nested, aliased and dotted imports (so the tests above can fail)."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    import torch.nn as nn\n    from streamlit import cache_data\n"
                 "import importlib\nimportlib.import_module('pydicom.dataset')\n", encoding="utf-8")
    assert {"torch", "streamlit", "pydicom"} <= _imports(f)


def test_torch_free_modules_do_not_load_torch_at_run_time() -> None:
    code = ("import sys, json; import medimg, medimg.io, medimg.preprocess, medimg.evaluate, medimg.spec, "
            "medimg.errors; import importlib.util as u\n"
            "if u.find_spec('medimg.viz'): import medimg.viz\n"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'streamlit', 'pytorch_grad_cam') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
