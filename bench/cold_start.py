"""Cold start of the app: process start -> the Analyze page drawn and usable, in a real browser.

Starts ``streamlit run app.py`` (a fresh process each time, so nothing is cached), opens the page in headless
Chromium (Playwright, the system's Chromium) and stops the clock when the page's title and the file uploader are
visible and the app has finished its run. The baseline is another commit of this repository (default: the one
before the lazy model load), exported with ``git archive`` into a temporary folder and measured in the same run,
alternating with the working tree.

    uv run python bench/cold_start.py                     # 3 runs each, baseline 268367a
    uv run python bench/cold_start.py --runs 5 --baseline HEAD~3 --cpus 0,1

``--cpus`` pins the server to those cores (``taskset``), e.g. two cores as the goal states (<= 5 s on 2 cores).
Prints the median and each run, and the ratio baseline / now.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _export(ref: str, dest: Path) -> Path:
    """``git archive ref`` unpacked into ``dest`` (the repository itself is not touched), weights linked."""
    data = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, check=True, capture_output=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def measure(root: Path, browser, cpus: str | None, timeout: float = 180.0) -> float:  # noqa: ANN001
    """Seconds from process start to the Analyze page drawn and idle."""
    port = _port()
    env = dict(os.environ, MEDIMG_WEIGHTS=str(REPO / "weights"), PYTHONPATH=str(root), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("server did not start")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(timeout * 1000)
        page.goto(url)
        page.get_by_role("heading", name="Analyze an image").wait_for()
        page.locator("input[type=file]").first.wait_for(state="attached")
        # the script run has finished (Streamlit's status widget says "Running" until then)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
        page.get_by_text("Upload an image to begin").wait_for()
        elapsed = time.perf_counter() - t0
        page.close()
        return elapsed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", default="268367a", help="git ref of the baseline (default: before issue 13)")
    ap.add_argument("--cpus", default=None, help="taskset CPU list for the server, e.g. 0,1")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is needed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="medimg-cold-") as tmp, sync_playwright() as pw:
        base_root = _export(args.baseline, Path(tmp) / "baseline")
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        results: dict[str, list[float]] = {"baseline": [], "now": []}
        try:
            measure(REPO, browser, args.cpus)  # warm the OS file cache once (both trees share the venv)
            for _ in range(args.runs):
                results["baseline"].append(measure(base_root, browser, args.cpus))
                results["now"].append(measure(REPO, browser, args.cpus))
        finally:
            browser.close()
    cores = args.cpus or f"all {os.cpu_count()}"
    print(f"cold start, process start -> Analyze page drawn (cores: {cores}, {args.runs} runs each)")
    for name, xs in results.items():
        label = f"baseline {args.baseline}" if name == "baseline" else "working tree"
        print(f"  {label:<22} median {statistics.median(xs):6.2f} s   runs: "
              + ", ".join(f"{x:.2f}" for x in xs))
    ratio = statistics.median(results["baseline"]) / statistics.median(results["now"])
    print(f"  speed-up (baseline / now): {ratio:.1f}x; goal <= 5 s: "
          f"{'met' if statistics.median(results['now']) <= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
