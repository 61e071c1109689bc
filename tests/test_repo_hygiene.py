"""The repository names no path of a particular machine (README, code, configs, specs, bench results)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|Users|tmp/[\w-]+|mnt|srv)/[\w.-]+")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / f for f in out.splitlines()
            if f.endswith((".py", ".md", ".toml", ".json", ".sh", ".cfg", ".yml", ".yaml", ".txt")) and
            f != "uv.lock" and (REPO / f).is_file()]


def test_no_machine_paths_in_tracked_files() -> None:
    files = _tracked_text_files()
    assert len(files) > 50
    hits = []
    for f in files:
        for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{f.relative_to(REPO)}:{i}: {line.strip()[:120]}")
    assert not hits, hits


def test_pattern_catches_machine_paths() -> None:
    work, home = "/" + "work", "/" + "home"  # built, so this file names no machine path itself
    assert MACHINE_PATH.search(f"see {work}/shared/RELIABILITY.md")
    assert MACHINE_PATH.search(f'root = "{home}/alice/data"')
    assert not MACHINE_PATH.search("../shared/data/kermany-cxr and weights/x.json")
    assert not MACHINE_PATH.search(f"https://example.org{work}/x")
