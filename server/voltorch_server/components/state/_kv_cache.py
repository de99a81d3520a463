"""A bounded in-memory copy of committed key/value rows, so a hot read never touches SQLite.

Why: every sqlite3 call releases the GIL (to step and again to reset the statement); with concurrent
RPCs each release costs a pair of thread switches, which on a small VM outweighs the query itself.
A cached GetKey makes none. The writer uses it too, to find a key's current value without reading the database.

Correctness: entries change only through `apply`, called after commit while the database's writer
lock is still held (so in commit order); a reader that missed fills the entry only if no commit was
applied between its read and its fill (`generation`), so a stale row can never overwrite a newer one.
Rows are kept as stored (value as JSON text): every caller gets its own freshly decoded value.
A reader may attach something derived from a cached row (GetKey: its protobuf form), so a hot key is
decoded and converted once per change rather than once per read; it goes when the row does.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple


class Row(NamedTuple):
    """A committed kv row: the value as stored (JSON text) and its metadata."""

    key: str
    value: str
    version: int
    create_revision: int
    mod_revision: int
    expire_at: float | None
    update_time: float


class KVCache:
    def __init__(self, max_entries: int = 100_000, max_bytes: int = 64 << 20):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._rows: dict[str, Row] = {}
        self._derived: dict[str, tuple[Row, Any]] = {}  # key -> (the row it was made from, the thing)
        self._bytes = 0
        self._generation = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def generation(self) -> int:
        """Read before querying the database; hand it to `fill`."""
        return self._generation

    def get(self, key: str) -> Row | None:
        return self._rows.get(key)

    def derived(self, row: Row) -> Any | None:
        """What was attached to this very row (None if nothing, or if the key has changed since)."""
        entry = self._derived.get(row.key)
        return entry[1] if entry is not None and entry[0] is row else None

    def attach(self, row: Row, thing: Any) -> None:
        """Keep `thing` (derived from `row`) while row is the key's cached row; counted as its size again."""
        with self._lock:
            if self._rows.get(row.key) is row and row.key not in self._derived:
                self._derived[row.key] = (row, thing)
                self._bytes += len(row.value)
                self._trim()

    def fill(self, row: Row, generation: int) -> None:
        """Remember a row read from the database, unless a commit was applied since `generation`."""
        with self._lock:
            if generation == self._generation:
                self._put(row)

    def apply(self, changes: list[tuple[str, Row | None]]) -> None:
        """Committed changes in commit order: (key, its new row, or None when deleted). Call after
        commit, under the writer lock."""
        with self._lock:
            self._generation += 1
            for key, row in changes:
                if row is None:
                    self._drop(key)
                else:
                    self._put(row)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._rows.clear()
            self._derived.clear()
            self._bytes = 0

    def _put(self, row: Row) -> None:
        self._drop(row.key)
        size = len(row.value) + len(row.key)
        if size > self.max_bytes // 16:
            return  # a huge value would evict many small ones
        self._rows[row.key] = row
        self._bytes += size
        self._trim()

    def _trim(self) -> None:
        while len(self._rows) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._rows)))  # oldest filled first

    def _drop(self, key: str) -> None:
        old = self._rows.pop(key, None)
        if old is not None:
            self._bytes -= len(old.value) + len(old.key)
        derived = self._derived.pop(key, None)
        if derived is not None:
            self._bytes -= len(derived[0].value)
