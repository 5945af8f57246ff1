"""Run every benchmark module (bench/bench_*.py) and merge their figures into bench/results/latest.json.

Each module exposes ``run(context) -> dict[str, float]`` returning flat, snake_case figures
with the unit in the name (``_per_s``, ``_ms``, ``_ratio``, ``_mb``). Pass module names to
run only some: ``make bench ARGS="reservations"``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.json"


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str]) -> int:
    from bench.context import BenchContext

    wanted = set(argv)
    modules = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if wanted:
        modules = [m for m in modules if m.removeprefix("bench_") in wanted or m in wanted]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    # How busy the shared host was around each module (1-minute load average before and after):
    # a ratio read on a host busy with other work is noisier than one read on a quiet host.
    load = dict(results.get("machine", {}).get("load_average", {}))
    with BenchContext.start() as context:
        for name in modules:
            module = name.removeprefix("bench_")
            print(f"\n== {module} ==", flush=True)
            started, load_before = time.monotonic(), os.getloadavg()[0]
            figures = importlib.import_module(f"bench.{name}").run(context)
            for key, value in figures.items():
                print(f"  {key:<52} {value:>12.3f}" if isinstance(value, float) else f"  {key:<52} {value!s:>12}")
            load[module] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            print(
                f"  ({time.monotonic() - started:.0f} s; load average {load[module][0]} → {load[module][1]})",
                flush=True,
            )
            results.update(figures)
    results["machine"] = {**machine(), "load_average": load}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nWrote {RESULTS.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
