"""What the system view needs from storage (recorded errors, metric history), in its own terms.

Implemented once for SQLite and PostgreSQL by `storage.stores.SqlSystem`; the app builds it and hands it
to `ErrorLog` and the `Watcher` (its metric history)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._errors_log import ErrorRecord


class SystemPort(Protocol):
    db: Any  # the database errors are written to, beside their system.error event (`write()`)

    def insert_error(self, tx: Any, row: tuple) -> None: ...
    def errors(
        self, equal: dict[str, str], since: float | None, before: int | None, limit: int
    ) -> list[tuple[ErrorRecord, int]]: ...
    def errors_carrying(
        self, trace_ids: set[str], correlation_ids: set[str], limit: int
    ) -> list[ErrorRecord]: ...
    def prune_errors(self, older_than: float) -> int: ...
    def record_samples(self, rows: Sequence[tuple], older_than: float | None) -> None: ...
    def samples(self, since: float) -> list[Any]: ...
