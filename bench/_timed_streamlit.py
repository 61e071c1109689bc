"""``streamlit`` with each script run timed: prints ``MEDIMG-RUN <start> <end>`` (epoch seconds) to stderr per run.

Used by ``bench/browser_latency.py`` to split the time a user waits into server work and browser rendering. Only
times are printed: no page content, no file names.
"""

import sys
import time

from streamlit.runtime.scriptrunner import script_runner as _sr

_orig = _sr.ScriptRunner._run_script


def _timed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    t0 = time.time()
    try:
        return _orig(self, *args, **kwargs)
    finally:
        print(f"MEDIMG-RUN {t0:.4f} {time.time():.4f}", file=sys.stderr, flush=True)


_sr.ScriptRunner._run_script = _timed

if __name__ == "__main__":
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *sys.argv[1:]]
    main()
