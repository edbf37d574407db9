"""Run every benchmark and print all results (``make bench`` runs this).

Usage (from the repo root, after ``bash bench/install_refs.sh``)::

    .venv/bin/python bench/run_all.py            # full runs (about 20 minutes)
    .venv/bin/python bench/run_all.py --quick    # short runs (about 6 minutes)

Runs, each as its own process with its output shown as it comes: ``bench/hit_throughput.py``,
``bench/single_flight.py``, ``bench/policy_sim.py``, ``bench/per_title.py`` and
``bench/encode_speed.py`` (those not present are skipped). JSON results go to
``bench/results/{name}-{timestamp}.json`` (git-ignored). Exit status: 0 when every benchmark ran
(a missed target is a result, not a failure), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BENCHMARKS = ("hit_throughput", "single_flight", "policy_sim", "per_title", "encode_speed")


def argv_for(name: str, quick: bool, results: Path) -> list[str] | None:
    """The command for one benchmark, or None if its script does not exist."""
    script = BENCH / f"{name}.py"
    if not script.exists():
        return None
    argv = [sys.executable, str(script), "--json", str(results)]
    if quick:
        argv.append("--quick")
    return argv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="short runs of every benchmark")
    ap.add_argument(
        "--only", help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)"
    )
    args = ap.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outcome: dict[str, str] = {}
    for name in names:
        results = RESULTS / f"{name}-{stamp}.json"
        cmd = argv_for(name, args.quick, results)
        if cmd is None:
            outcome[name] = "not present"
            continue
        shown = " ".join(os.path.relpath(c) if c.startswith("/") else c for c in cmd)
        print(f"\n=== {name}: {shown}\n", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(cmd, cwd=BENCH.parent).returncode
        took = time.monotonic() - t0
        outcome[name] = f"ok ({took:.0f} s), {results.relative_to(BENCH.parent)}"
        if rc != 0:
            outcome[name] = f"FAILED (exit {rc}, {took:.0f} s)"
    print("\n=== summary")
    for name, text in outcome.items():
        print(f"{name:<15} {text}")
    return 0 if all(not t.startswith("FAILED") for t in outcome.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
