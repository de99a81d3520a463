"""A process-wide count of cross-thread hand-offs on the path of a workflow step: work submitted to a
thread pool, a waiting thread woken with a result, a group-commit follower woken by its leader. Read by
the bench (the storage component's details) to report hand-offs per step beside commits per step."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_count = 0


def handed_off(n: int = 1) -> None:
    """Count n hand-offs (a pool submit, a waiter woken)."""
    global _count
    with _lock:
        _count += n


def handoffs() -> int:
    """Hand-offs counted since the process started."""
    return _count
