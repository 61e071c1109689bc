"""Results in the browser: upload -> prediction and heat map visible, and a rerun after moving a slider, in a real
browser, for the working tree and a baseline commit measured in the same run.

For each tree a ``streamlit run app.py`` server is started once and warmed up (one analysis, so the model is
loaded: the clinician's first upload after a cold start is measured by ``bench/cold_start.py``). Each repeat opens
a fresh page (a new session: nothing of the previous upload is cached), uploads a 2k chest radiograph DICOM
(a paediatric test-split chest film as a 2048 px 16-bit DX DICOM) through the file input, and stops the clock
when the heat map (drawn with the prediction) appears; the time until the whole page is complete (the run that adds the stability line and the rest has ended) is
printed too. "Analyse anyway" is ticked when the applicability checks ask for it (counted in the time).
Then the heat-map opacity slider is moved one step with the keyboard and the rerun is timed the same way.

The split: *server* is the time the app's script runs took (timed inside the server by
``bench/_timed_streamlit.py``, which wraps Streamlit's script runner), *render* is the rest (the upload's
transfer, websocket messages, the browser drawing the elements and figures).

    uv run python bench/browser_latency.py                       # 5 repeats, baseline 39ae8a6
    uv run python bench/browser_latency.py --repeats 9 --baseline HEAD~5 --file path/to/scan.dcm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from cold_start import _export, _port  # noqa: E402

STATUS = "[data-testid=\"stStatusWidget\"]"
JS_IDLE = f"() => !document.querySelector('{STATUS}')"


def _default_data() -> bytes:
    """A paediatric chest film of the model's own test split (Kermany), as the 2k 16-bit DX DICOM a clinician's PACS
    would export (so the applicability checks pass, as for a film the model is meant for)."""
    import io

    import numpy as np
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medimg.catalog import data_root

    src = sorted((data_root() / "kermany-cxr" / "test" / "PNEUMONIA").glob("*.jpeg"))[0]
    a = np.asarray(Image.open(src).convert("L"), dtype=np.uint16)
    # each pixel repeated 9 x 9 (224 -> 2016 px): the app's downsampling gives back the film the model was tested
    # on. A smooth (bicubic) enlargement is blurrier at 224 px than any training film, and the gate's low-level
    # statistics refuse it: a real 2k film has its own fine detail.
    k = max(1, 2048 // max(a.shape))
    px = (np.kron(a, np.ones((k, k), dtype=np.uint16)) * 16).astype(np.uint16)  # 12-bit values
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.PatientAge = "DX", "CHEST", "AP", "004Y"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = px.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _start(root: Path, cpus: str | None) -> tuple[subprocess.Popen, str]:
    port = _port()
    env = dict(os.environ, MEDIMG_WEIGHTS=str(REPO / "weights"), PYTHONPATH=str(root), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(REPO / "bench" / "_timed_streamlit.py"), "run", "app.py", "--server.port", str(port),
           "--server.address",
           "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    log = open(Path(tempfile.mkdtemp(prefix="medimg-runs-")) / "server.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 120:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("the server did not start")


def _runs(proc: subprocess.Popen) -> list[tuple[float, float]]:
    """(start, end) epoch seconds of every script run so far."""
    proc.log.flush()  # type: ignore[attr-defined]
    text = Path(proc.log.name).read_text(errors="replace")  # type: ignore[attr-defined]
    return [(float(a), float(b)) for line in text.splitlines() if line.startswith("MEDIMG-RUN ")
            for a, b in [line.split()[1:3]]]


def _server_s(proc: subprocess.Popen, since: float, until: float) -> float:
    """Seconds of script runs between ``since`` and ``until`` (epoch seconds)."""
    return sum(min(b, until) - max(a, since) for a, b in _runs(proc) if b > since and a < until)


def _heat_src(page) -> str:  # noqa: ANN001
    return page.evaluate("""() => { const ims = document.querySelectorAll('.js-plotly-plot image');
        return Array.from(ims).map(i => (i.getAttribute('href') || '').length + ':' +
                                        (i.getAttribute('href') || '').slice(-64)).join('|'); }""")


def _wait_result(page, timeout_ms: float) -> bool:  # noqa: ANN001
    """Wait for the heat map's colour bar or the "Analyse anyway" box; tick the box (once). True if ticked."""
    bar = page.locator(".js-plotly-plot .colorbar").first
    anyway = page.get_by_text("Analyse anyway", exact=False).first
    bar.or_(anyway).wait_for(timeout=timeout_ms)
    ticked = False
    if not bar.is_visible():
        anyway.click()
        ticked = True
        bar.wait_for(timeout=timeout_ms)
    page.wait_for_function(JS_IDLE, timeout=timeout_ms)
    return ticked


def measure_tree(root: Path, browser, path: Path, repeats: int, cpus: str | None) -> dict:  # noqa: ANN001
    """Time ``repeats`` uploads of the file at ``path`` (chosen in the file dialog: the browser reads it from disk,
    as when a clinician picks a file) on the app of the tree ``root``."""
    proc, url = _start(root, cpus)
    out: dict = {"upload": [], "upload_server": [], "slider": [], "slider_server": [], "anyway": 0,
                 "to_first_run": [], "after_last_run": [], "page_done": []}
    try:
        for i in range(repeats + 1):  # the first run warms the server up (model load) and is not counted
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_role("heading", name="Analyze an image").wait_for()
            page.wait_for_function(JS_IDLE)
            page.locator("input[type=file]").first.wait_for(state="attached")
            page.wait_for_timeout(1500)  # a person takes longer than this to choose a file
            page.evaluate("""() => { window.__picked = null; document.addEventListener('change', e => {
                if (e.target && e.target.type === 'file' && window.__picked === null) window.__picked = Date.now(); },
                true); }""")
            page.evaluate("""() => { window.__bar = null; new MutationObserver(() => {
                if (window.__bar === null && document.querySelector('.js-plotly-plot .colorbar'))
                    window.__bar = Date.now(); }).observe(document.body, {childList: true, subtree: true}); }""")
            page.locator("input[type=file]").first.set_input_files(str(path))
            ticked = _wait_result(page, 120_000)
            t_done = time.time()
            t0 = page.evaluate("() => window.__picked") / 1000  # the moment the file was chosen
            t1 = page.evaluate("() => window.__bar") / 1000  # the heat map (drawn with the result) appeared
            if i:
                out["upload"].append(t1 - t0)
                out["upload_server"].append(_server_s(proc, t0, t1))
                out["page_done"].append(t_done - t0)
                out["anyway"] += int(ticked)
                runs = [r for r in _runs(proc) if r[1] > t0 and r[0] < t1]
                if runs:
                    out["to_first_run"].append(runs[0][0] - t0)
                    out["after_last_run"].append(max(0.0, t1 - runs[-1][1]))
            slider = page.get_by_role("slider", name="Heat-map opacity")
            if slider.count():
                page.wait_for_timeout(500)
                before = _heat_src(page)
                slider.first.focus()
                t2 = time.time()
                page.keyboard.press("ArrowRight")
                page.wait_for_function("""b => { const ims = document.querySelectorAll('.js-plotly-plot image');
                    return Array.from(ims).map(i => (i.getAttribute('href') || '').length + ':' +
                        (i.getAttribute('href') || '').slice(-64)).join('|') !== b; }""", arg=before,
                                       timeout=30_000)
                page.wait_for_function(JS_IDLE)
                t3 = time.time()
                if i:
                    out["slider"].append(t3 - t2)
                    out["slider_server"].append(_server_s(proc, t2, t3))
            page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", default="39ae8a6", help="git ref of the baseline (default: before issue 11)")
    ap.add_argument("--file", default=None, help="the image to upload (default: a 2k chest CR DICOM)")
    ap.add_argument("--cpus", default=None, help="taskset CPU list for the server, e.g. 0,1")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is needed (apt-get install chromium)")
    data = Path(args.file).read_bytes() if args.file else _default_data()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="medimg-latency-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            path = Path(tmp) / "scan.dcm"  # the bench's own synthetic film (or --file), never a user's upload
            path.write_bytes(data)
            base = measure_tree(_export(args.baseline, Path(tmp) / "baseline"), browser, path, args.repeats,
                                args.cpus)
            now = measure_tree(REPO, browser, path, args.repeats, args.cpus)
        finally:
            browser.close()
    load = os.getloadavg()[0]
    print(f"upload of a {len(data) / 2**20:.1f} MB DICOM -> prediction and heat map visible; p50 over "
          f"{args.repeats} fresh sessions (load average {load:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'':<26}{'total p50':>10}{'server':>9}{'render':>9}{'slider p50':>12}{'server':>9}{'render':>9}")
    for label, r in ((f"baseline {args.baseline}", base), ("working tree", now)):
        up, us, sl, ss = (_p50(r[k]) for k in ("upload", "upload_server", "slider", "slider_server"))
        print(f"{label:<26}{up:>9.2f}s{us:>8.2f}s{up - us:>8.2f}s{sl:>11.2f}s{ss:>8.2f}s{sl - ss:>8.2f}s"
              + (f"   ('Analyse anyway' ticked in {r['anyway']} runs)" if r["anyway"] else ""))
    for label, r in ((f"baseline {args.baseline}", base), ("working tree", now)):
        print(f"  {label}: file chosen -> first script run {_p50(r['to_first_run']):.2f} s; the run's end -> "
              f"heat map drawn {_p50(r['after_last_run']):.2f} s; page complete (the run that adds the stability "
              f"line and the rest ended, all drawn) {_p50(r['page_done']):.2f} s")
    ratio = _p50(base["upload"]) / _p50(now["upload"])
    print(f"speed-up upload (baseline / now): {ratio:.2f}x; goals: upload <= 1 s p50 "
          f"{'met' if _p50(now['upload']) <= 1 else 'NOT met'}, slider <= 0.3 s "
          f"{'met' if _p50(now['slider']) <= 0.3 else 'NOT met'}")
    print(json.dumps({"baseline": base, "now": now}))


if __name__ == "__main__":
    main()
