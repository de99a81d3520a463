"""The storage component: the database file's health, as the watcher and GetHealth show it.

Damage to a page surfaces only when a query reaches it, as an error in whichever component ran the
query. Those errors are reported here (`failed`): the component is UNHEALTHY while they keep coming
(for `clear_after` seconds after the last one), and for good once a quick check has found the file
damaged. A restart (automatic by the watcher, or RestartComponent) runs that quick check: a file
found sound clears the errors seen so far.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ...handoffs import handoffs
from ...storage import Database, ping
from ..shared import Component

CLEAR_AFTER = 60.0  # seconds without a new storage error before the component passes again


class Storage(Component):
    name = "storage"

    def __init__(
        self,
        db: Database,
        *,
        clear_after: float = CLEAR_AFTER,
        clock: Callable[[], float] = time.monotonic,
        shared: Any = None,
    ):
        """`shared`: the PostgreSQL database state and events live in, beside this replica's own file
        (`db`); a replica that cannot reach it is UNHEALTHY here too."""
        self.db = db
        self.shared = shared
        self.clear_after = clear_after
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = 0
        self._last_error = ""
        self._last_error_at: float | None = None
        self._damaged = ""  # what a quick check found; sticky until a later one passes
        self._started = False

    def failed(self, exc: BaseException) -> None:
        """A query failed on a storage error (e.g. "database disk image is malformed")."""
        with self._lock:
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._last_error_at = self._clock()

    def start(self) -> None:
        """The first start follows the Runtime's own quick check; a restart runs one."""
        if not self._started:
            self._started = True
            return
        result = self.db.check_integrity()
        with self._lock:
            if result.ok:
                self._damaged, self._last_error_at = "", None
            else:
                self._damaged = f"quick_check found the file damaged: {result.problems[0]}"

    def check(self) -> None:
        with self._lock:
            damaged, last, at = self._damaged, self._last_error, self._last_error_at
        if damaged:
            raise RuntimeError(damaged)
        if at is not None and self._clock() - at < self.clear_after:
            raise RuntimeError(f"storage error {self._clock() - at:.0f}s ago: {last}")
        ping(self.db)  # the file answers at all
        if self.shared is not None:
            self.shared.check_reachable()  # Unavailable (and why) while the database does not answer

    def details(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"path": self.db.path, "storage_errors": self._errors}
        # What a workflow step costs, for the bench: transactions committed, cross-thread hand-offs.
        out["commits"] = self.db.commits + (self.shared.commits if self.shared is not None else 0)
        out["handoffs"] = handoffs()
        # Where the writer lock's time goes (seconds; SQLite): held close to the wall time is the bound;
        # of it, COMMIT's wall time and its thread's CPU (what a per-commit fsync costs).
        # The holds' count, their holder's own CPU (held minus CPU: waiting, for the GIL or a core) and
        # sqlite3 calls.
        for key in ("writer_waited", "writer_held", "commit_time", "commit_cpu", "writer_cpu"):
            if hasattr(self.db, key):
                out[key] = round(getattr(self.db, key), 6)
        for key in ("writer_holds", "writer_calls"):
            if hasattr(self.db, key):
                out[key] = getattr(self.db, key)
        if self.shared is not None:
            out["shared"] = "postgresql"  # not its DSN: that may hold a password
        return out
