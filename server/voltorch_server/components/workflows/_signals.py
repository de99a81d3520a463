"""Signals sent to executions: kept (persisted) until a WaitStep or ApprovalStep consumes them, oldest first.
`SignalStore` is what the engine needs from storage (implemented by `storage.stores.SqlSignals`); callers
own the transactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Signal:
    id: str
    execution_id: str
    name: str
    payload: Any
    request_id: str
    sender: str
    create_time: float
    consumed_by: str = ""


class SignalStore(Protocol):
    db: Any

    def insert(self, tx: Any, s: Signal, digest: str) -> None: ...
    def by_request(self, tx: Any, execution_id: str, request_id: str) -> tuple[Signal, str] | None:
        """The signal sent with this request id, and its request digest."""
        ...

    def get(self, signal_id: str) -> Signal | None: ...
    def kept(self, execution_id: str, name: str, limit: int = 100) -> list[Signal]:
        """Signals of that name nobody has consumed yet, oldest first."""
        ...

    def consume(self, tx: Any, signal_id: str, step_id: str, when: float) -> None: ...
    def of_execution(self, execution_id: str) -> list[Signal]: ...
