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
    files = _files("medimg/evaluate.py", "medimg/viz")
    assert len(files) >= 3
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


# --- the house: serving never imports the workshop, and no module imports itself round a loop -------------

SERVING_EXEMPT = {"medimg.cli"}  # the command line is the workshop's front door
LAZY_ONLY = {"medimg.ui.train_lab"}  # the educators' training lab reaches the workshop inside a function only


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _internal_edges(path: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported medimg module, at module level?) for every import statement in ``path``, function-local ones
    included; imports under ``if TYPE_CHECKING:`` (never executed) are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    top_level = {id(n) for stmt in tree.body if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef |
                                                                ast.ClassDef) for n in ast.walk(stmt)}
    out: list[tuple[str, bool]] = []

    def add(name: str, node: ast.AST) -> None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != me:
            out.append((name, id(node) in top_level))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name, node)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                full = f"{base}.{a.name}"
                add(full if full in modules else base, node)
    return out


def _graph() -> dict[str, list[tuple[str, bool]]]:
    files = _files("medimg")
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _internal_edges(f, modules) for f in files}


def _cycles(graph: dict[str, list[tuple[str, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere() -> None:
    graph = _graph()
    assert len(graph) >= 40
    assert _cycles(graph) == []


def test_serving_never_imports_training() -> None:
    graph = _graph()
    bad = []
    for mod, edges in graph.items():
        if mod.startswith("medimg.training") or mod in SERVING_EXEMPT:
            continue
        for target, top in edges:
            if target.startswith("medimg.training") and (mod not in LAZY_ONLY or top):
                bad.append(f"{mod} -> {target}{'' if top else ' (function-local)'}")
    assert not bad, bad


def test_graph_checker_sees_cycles_and_local_imports(tmp_path: Path) -> None:
    """The graph check can fail: a function-local import that closes a loop is found."""
    graph = {"medimg.a": [("medimg.b", True)], "medimg.b": [("medimg.a", False)], "medimg.c": []}
    assert _cycles(graph) == [["medimg.a", "medimg.b"]]
    f = tmp_path / "x.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import medimg.gate\n"
                 "def g():\n    from medimg.training import tasks\n", encoding="utf-8")
    edges = ast.parse(f.read_text())  # parsed the same way as the real files
    assert edges is not None
    modules = {"medimg.gate", "medimg.training", "medimg.training.tasks"}
    mod_file = REPO / "medimg" / "_probe_for_test.py"
    try:
        mod_file.write_text(f.read_text(), encoding="utf-8")
        assert _internal_edges(mod_file, modules) == [("medimg.training.tasks", False)]
    finally:
        mod_file.unlink(missing_ok=True)


def test_every_public_error_class_lives_in_errors_py() -> None:
    """Error classes are defined once, in medimg/errors.py (private control-flow exceptions excepted)."""
    import medimg.errors as errors

    bad = []
    for f in _files("medimg"):
        if f.name == "errors.py" and f.parent.name == "medimg":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b).split(".")[-1] for b in node.bases}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    bad.append(f"{f.relative_to(REPO)}: {node.name}")
    assert not bad, bad
    assert {"BusyError", "ExplainError", "DatasetError", "ReportError", "CaseError"} <= set(errors.__all__)
