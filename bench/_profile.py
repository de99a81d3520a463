"""cProfile across every thread of a process (cProfile alone only sees the thread that enabled it).

`threading.setprofile` hands each new thread a one-shot hook that starts a fresh `cProfile.Profile`
for that thread; `dump()` merges them. Used by `_serve --profile` for the server's worker threads.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _start_here(*_args: object) -> None:
    # Per-thread CPU time, not wall time: wall time would charge every GIL wait to whatever call
    # happened to release the GIL (sqlite's execute, grpc's send), hiding where CPU really goes.
    prof = cProfile.Profile(time.thread_time_ns, 1e-9)
    with _lock:
        _profiles.append(prof)
    prof.enable()  # replaces this hook with cProfile's own for the calling thread


def enable() -> None:
    """Profile the calling thread and every thread started from now on."""
    threading.setprofile(_start_here)
    _start_here()


def dump(path: str, top: int = 40) -> str:
    """Write merged stats to `path` (pstats format); return a text summary of the top functions."""
    threading.setprofile(None)
    sys.setprofile(None)
    with _lock:
        profs = list(_profiles)
    for p in profs:
        p.disable()  # only stops the calling thread's; the others are snapshotted as they are
    stats: pstats.Stats | None = None
    for p in profs:
        p.create_stats()
        if not p.stats:
            continue
        if stats is None:
            stats = pstats.Stats(p)
        else:
            stats.add(p)
    if stats is None:
        return "no profile data"
    stats.dump_stats(path)
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()
