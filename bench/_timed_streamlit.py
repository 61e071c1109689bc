"""``streamlit`` with each script run timed: prints ``MEDIMG-RUN <start> <end>`` (epoch seconds) to stderr per run.

Used by ``bench/browser_latency.py`` to split the time a user waits into server work and browser rendering. Only
times are printed: no page content, no file names.
"""

import os
import sys
import time

from streamlit.runtime.scriptrunner import script_runner as _sr

_orig = _sr.ScriptRunner._run_script


_PROFILE_DIR = os.environ.get("MEDIMG_PROFILE_DIR")  # set: each run's cProfile is written there (for diagnosis)


def _timed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    t0 = time.time()
    prof = None
    if _PROFILE_DIR:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        return _orig(self, *args, **kwargs)
    finally:
        t1 = time.time()
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(_PROFILE_DIR, f"run-{t0:.3f}.prof"))
        print(f"MEDIMG-RUN {t0:.4f} {t1:.4f}", file=sys.stderr, flush=True)


_sr.ScriptRunner._run_script = _timed

if __name__ == "__main__":
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *sys.argv[1:]]
    main()
