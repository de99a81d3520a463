"""The LLM endpoints as a component of the server: what GetHealth and the metrics say about them.

The limiters themselves live with the agents (agents/limiter.py); this component lets the watcher report
them: DEGRADED with the reason when an endpoint's recent calls keep failing, and per endpoint the calls
in flight, the window, the queue, 429s and the waits they caused, and where the calls run (the LLM call
process, its pid and calls in flight). Restarting it (RestartComponent "llm")
starts every endpoint afresh: a new window, no stale permits.
"""

from __future__ import annotations

from typing import Any

from ...agents.limiter import EndpointSnapshot, Limiters
from ...agents.llm_clients import LlmCalls
from ..shared import Component

__all__ = ["EndpointSnapshot", "LlmEndpoints"]


class LlmEndpoints(Component):
    name = "llm"

    def __init__(self, limiters: Limiters, calls: LlmCalls | None = None):
        """`calls`: where the LLM calls run (its state is one line of the details)."""
        self.limiters = limiters
        self.calls = calls

    def stop(self) -> None:
        self.limiters.reset()

    def check(self) -> str | None:
        bad = [s for s in self.limiters.snapshots() if s.degraded]
        if not bad:
            return None
        return "; ".join(
            f"{s.endpoint}: {s.consecutive_failures} consecutive failed calls, last: {s.last_error}"
            for s in bad
        )

    def details(self) -> dict[str, Any]:
        snaps = self.limiters.snapshots()
        out: dict[str, Any] = {
            "endpoints": len(snaps),
            "llm_in_flight": sum(s.in_flight for s in snaps),
            "llm_queue_depth": sum(s.queue_depth for s in snaps),
            "llm_throttled": sum(s.throttled for s in snaps),
        }
        if self.calls is not None:
            out["calls"] = self.calls.describe()
        for s in snaps:
            out[f"endpoint {s.endpoint}"] = (
                f"in_flight={s.in_flight} window={s.window:g}/{s.max_in_flight} queue={s.queue_depth}"
                f" peak={s.peak_in_flight} calls={s.calls} 429s={s.throttled} overloaded={s.overloaded}"
                f" failures={s.failures} throttle_wait={s.throttle_wait:g}s queue_wait={s.queue_wait:g}s"
                + (f" held_for={s.held_for:g}s" if s.held_for else "")
                + (f" last_error={s.last_error!r}" if s.last_error else "")
            )
        return out
