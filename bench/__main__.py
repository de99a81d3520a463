"""`python -m bench [SUITE ...] [--quick] [--strict] [--profile]`: run benchmark suites, print one table.

A suite is a module `bench/suite_<name>.py` exposing `run(args) -> list[Result]`; it is found by name,
so adding a suite needs no change here. Exit code 0 whatever the numbers (PASS/MISS are printed),
unless --strict and some row missed its target or failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ._harness import Result, print_results

_HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(
        m.name.removeprefix("suite_")
        for m in pkgutil.iter_modules([str(_HERE)])
        if m.name.startswith("suite_")
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    suites = discover()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "suites", nargs="*", metavar="SUITE", help=f"suites to run (default: all of {', '.join(suites)})"
    )
    p.add_argument("--quick", action="store_true", help="short smoke run: 1 round, short windows")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed or a row fails")
    p.add_argument("--clients", type=int, default=8, help="closed-loop client threads (default 8)")
    p.add_argument(
        "--duration", type=float, help="seconds measured per case per round (default 2.5, quick 1)"
    )
    p.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each window (default 0.5, quick 0.3)"
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds per case (default 3, quick 1)")
    p.add_argument("--max-calls", type=int, default=1_000_000, help="cap on calls measured per window")
    p.add_argument(
        "--payload", type=int, default=128, help="bytes of JSON value in state payloads (default 128)"
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=500,
        help="max_batch of the events suite's live subscribers (default 500, as the SDK; 0 = one event per"
        " message, as a client that does not ask for batches)",
    )
    p.add_argument(
        "--publish",
        choices=("stream", "unary"),
        default="stream",
        help="how the events suite's latency rows publish: over one PublishStream call (default) or one"
        " unary Publish call per event",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="",
        metavar="DIR",
        help="run the voltorch server under cProfile (all threads); stats written to DIR (default a temp dir)."
        " Profiling slows the server: its numbers are then not comparable",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="events latency rows: time every delivery's stages in server and driver and print where the"
        " slowest 1 %% went (bench/_probe.py; the probes cost the server a few µs per event)",
    )
    p.add_argument(
        "-k", dest="select", metavar="TEXT", help="only cases whose name contains TEXT (and their baselines)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("-v", "--verbose", action="store_true", help="print each round as it finishes")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    args = p.parse_args(argv)
    unknown = [s for s in args.suites if s not in suites]
    if unknown:
        p.error(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(suites)}")
    args.suites = args.suites or suites
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 2.5)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if args.profile == "":
        args.profile = tempfile.mkdtemp(prefix="voltorch-profile-")
    elif args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.probe:
        os.environ["BENCH_PROBE"] = "1"  # the servers started from now on install bench._probe
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(discover()))
        return 0
    results: list[Result] = []
    began = time.monotonic()
    for name in args.suites:
        mod = importlib.import_module(f"bench.suite_{name}")
        t = time.monotonic()
        print(f"running suite {name} ...", file=sys.stderr, flush=True)
        results.extend(mod.run(args))
        print(f"suite {name} took {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # a busy machine's latencies are not ours
    print_results(
        results,
        title=f"voltorch benchmarks: {args.clients} clients, {args.rounds} x {args.duration:g}s per case"
        f" ({time.monotonic() - began:.0f}s total; load average at the end {load})",
    )
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "passed": r.passed} for r in results], indent=2))
    if args.profile:
        print(f"profiles (cProfile, numbers above are slowed by it): {args.profile}/*.pstats and *.txt")
    missed = [r for r in results if r.passed is False]
    if missed:
        print("missed: " + ", ".join(f"{r.suite}/{r.name}" for r in missed))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
