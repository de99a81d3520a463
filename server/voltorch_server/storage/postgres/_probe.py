"""Whether the database answers, known at once: a background probe on a connection of its own.

Why: with the database gone, every call through the pool waits its full timeout (seconds) before it
fails, so a health round that asks several components — and publishes its own event — took tens of
seconds, and GetHealth with it. The probe asks the database `SELECT 1` every `interval` seconds (every
`retry_interval` while it is down) on its own connection, never the pool's, and keeps the answer:
`status()` reads it without a round trip. A probe that hangs (a network that drops packets) shows as
down once its last answer is older than `stale_after`. A call that fails elsewhere as if the database
were gone marks it unreachable and asks for a probe now (`failed()`): an outage is known as soon as a
call has met it, and the database's return within `retry_interval`.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

log = logging.getLogger("voltorch.db")

INTERVAL = 1.0  # seconds between probes while the database answers
RETRY_INTERVAL = 0.2  # ... while it does not
CONNECT_TIMEOUT = 2  # seconds (libpq's smallest)
STALE_AFTER = 5.0  # seconds without an answer (a hung probe) before the database counts as unreachable


class Probe:
    def __init__(
        self,
        dsn: str,
        *,
        interval: float = INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        stale_after: float = STALE_AFTER,
    ):
        self._dsn = dsn
        self._interval, self._retry_interval, self._stale_after = interval, retry_interval, stale_after
        self._lock = threading.Lock()
        self._error = ""  # why the database is unreachable ("" when it answered the last probe)
        self._reported = False  # the probe's last finding was an outage (logged once, as it begins)
        self._answered = time.monotonic()  # when the database last answered (the pool just opened)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="pg-probe", daemon=True)
        self._thread.start()

    def status(self) -> str:
        """Why the database is unreachable, or "" when it answers."""
        with self._lock:
            error, answered = self._error, self._answered
        if error:
            return error
        silent = time.monotonic() - answered
        if silent > self._stale_after:
            return f"no answer from the database for {silent:.0f}s"
        return ""

    def failed(self, error: str) -> None:
        """A call failed as if the database were gone: unreachable from now until a probe, run at once,
        finds it answering (so a health check right after the failure agrees with it)."""
        with self._lock:
            self._error = self._error or error
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            error = self._probe()
            with self._lock:
                self._error = error
                if not error:
                    self._answered = time.monotonic()
                changed, self._reported = bool(error) != self._reported, bool(error)
            if changed:
                log.warning(
                    "the database is unreachable: %s" if error else "the database answers again%s", error
                )
            self._wake.wait(self._retry_interval if error else self._interval)
            self._wake.clear()
        if self._conn is not None:
            self._conn.close()

    def _probe(self) -> str:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            self._conn.execute("SELECT 1")
            return ""
        except psycopg.Error as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return f"{type(exc).__name__}: {str(exc).strip()[:200]}"

    def close(self) -> None:
        """Stop probing (the thread ends within one probe; its connection with it)."""
        self._stop.set()
        self._wake.set()
