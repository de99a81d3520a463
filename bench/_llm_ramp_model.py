"""A model of one round of the llm suite, to see what the endpoint limiter's ramp costs in wall time
where the shared machine's seconds cannot tell (bench/README.md, `llm_initial_window`).

    .venv/bin/python -m bench._llm_ramp_model

200 complete workflows (analysis, planning, coding + testing, review, summary: 6 calls, 5 in a row) on a
server that is one CPU (the GIL): each call costs CPU before it is sent, when its answer is read (the
limiter's permit is released there) and for the step's commit, FIFO; each workflow's start costs CPU too.
The endpoint is the stub: 0.3 s per call, 429 at once above 128 in flight, Retry-After 0.1 s. The limiter
is the real EndpointLimiter on the model's clock. Prints wall / ideal (the critical path x 2 waves) and
the 429s for a few initial windows and CPU costs.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

from voltorch_server.agents.limiter import EndpointLimiter, LimitCancelled, LimitSettings, Outcome, Permit

NEXT = {
    "analysis": ["planning"],
    "planning": ["coding", "testing"],
    "coding": ["review"],
    "testing": ["review"],
    "review": ["summary"],
    "summary": [],
}
NEEDS = {"review": 2}  # steps that wait for more than one before them


def round_wall(
    initial: int,
    cpu: tuple[float, float, float, float] = (1.0e-3, 0.5e-3, 2.0e-3, 1.5e-3),
    workflows: int = 200,
    capacity: int = 128,
    latency: float = 0.3,
    retry_after: float = 0.1,
) -> tuple[float, int]:
    """(wall / ideal, 429s) of one round; cpu = seconds before a call, reading it, the commit, a start."""
    before, read, commit, start = cpu
    now = 0.0
    limiter = EndpointLimiter(LimitSettings(initial_window=initial, max_in_flight=256), clock=lambda: now)
    events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
    order = itertools.count()
    cpu_free = 0.0
    waiting: list[tuple[int, str]] = []
    at_stub = rejected = 0
    arrived: dict[tuple[int, str], int] = {}
    done: list[float] = []

    def at(t: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(events, (t, next(order), fn, args))

    def on_cpu(cost: float, fn: Callable[..., None], *args: Any) -> None:
        nonlocal cpu_free
        cpu_free = max(now, cpu_free) + cost
        at(cpu_free, fn, *args)

    def grant() -> None:
        while waiting:
            try:
                permit = limiter.acquire(deadline=now)
            except LimitCancelled:
                return
            send(waiting.pop(0), permit)

    def ask(call: tuple[int, str]) -> None:
        waiting.append(call)
        grant()

    def send(call: tuple[int, str], permit: Permit) -> None:
        nonlocal at_stub, rejected
        if at_stub >= capacity:
            rejected += 1
            on_cpu(read, throttled, call, permit)
        else:
            at_stub += 1
            at(now + latency, answered, call, permit)

    def throttled(call: tuple[int, str], permit: Permit) -> None:
        permit.release(Outcome.THROTTLED, retry_after=retry_after)
        at(now + retry_after, ask, call)
        grant()

    def answered(call: tuple[int, str], permit: Permit) -> None:
        nonlocal at_stub
        at_stub -= 1
        on_cpu(read, finished, call, permit)

    def finished(call: tuple[int, str], permit: Permit) -> None:
        permit.release(Outcome.OK)
        grant()
        on_cpu(commit, committed, call)

    def committed(call: tuple[int, str]) -> None:
        workflow, step = call
        for nxt in NEXT[step]:
            key = (workflow, nxt)
            arrived[key] = arrived.get(key, 0) + 1
            if arrived[key] >= NEEDS.get(nxt, 1):
                on_cpu(before, ask, key)
        if not NEXT[step]:
            done.append(now)

    for w in range(workflows):
        on_cpu(start, on_cpu, before, ask, (w, "analysis"))
    while events:
        now, _, fn, args = heapq.heappop(events)
        fn(*args)
    critical = start + 5 * (before + latency + read + commit)
    return max(done) / (critical * math.ceil(workflows / capacity)), rejected


if __name__ == "__main__":
    for scale in (1.0, 0.96):
        cpu = (1.0e-3 * scale, 0.5e-3 * scale, 2.0e-3 * scale, 1.5e-3 * scale)
        for initial in (32, 48, 64, 96, 128):
            ratio, throttled = round_wall(initial, cpu)
            print(f"CPU x{scale:g}, initial window {initial:3d}: {ratio:.2f}x the ideal, {throttled} 429s")
