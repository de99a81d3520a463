"""Durable step timers (sleep steps, start_after delays, wait timeouts): one row per (step, kind),
with fired_at set in the same checkpoint that acts on the timer — so it fires once, never twice, and a
restarted server re-arms what has not fired (late when it was down at the time). `TimerStore` is what the
engine needs from storage (implemented by `storage.stores.SqlTimers`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

SLEEP, START_AFTER, TIMEOUT = "sleep", "start_after", "timeout"


@dataclass
class TimerRow:
    step_id: str
    kind: str
    fire_at: float
    fired_at: float | None = None


class TimerStore(Protocol):
    db: Any

    def add(self, tx: Any, execution_id: str, t: TimerRow) -> None: ...
    def fired(self, tx: Any, execution_id: str, t: TimerRow) -> None: ...
    def of_execution(self, execution_id: str) -> list[TimerRow]: ...
