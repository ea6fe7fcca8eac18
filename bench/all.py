"""Every benchmark in one run, one after the other: `python bench/all.py [--quick]`.

Each writes its own section of bench/RESULTS.md (and its JSON under bench/results/); running them
in one invocation puts every figure of RESULTS.md in the same session on the same machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("probes.py", "ingest.py", "exposition.py", "custom_metrics.py", "sentry.py", "posthog.py", "flags.py",
           "otlp.py", "analytics.py", "crash_loop.py", "soak.py")


def main(argv: list[str]) -> int:
    extra = ["--quick"] if "--quick" in argv else []
    began = time.monotonic()
    for bench in BENCHES:
        print(f"== {bench} {' '.join(extra)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / bench), *extra], cwd=HERE.parent)
        if code != 0:
            print(f"{bench} failed with exit code {code}", file=sys.stderr)
            return code
    print(f"all benchmarks done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
