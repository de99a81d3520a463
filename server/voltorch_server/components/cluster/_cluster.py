"""Members: each replica writes a heartbeat row every `timeout / 4` seconds; a member whose last
heartbeat is older than `timeout` is dead for every replica alike (they all read the same rows with the
same rule). Dead rows stay visible for `retention` seconds, then the replica holding the prune lease
(a PostgreSQL advisory lock; on SQLite the one server) deletes them.

Heartbeat times are the writers' wall clocks: replicas are expected to run NTP-synchronised clocks, with
a skew well under the timeout."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ... import __version__
from ..shared import Component
from ._member import Member, MemberRow
from ._store_port import MembersPort

log = logging.getLogger("voltorch.cluster")

PRUNE_LEASE = 0x766F6C03  # PostgreSQL advisory lock: the replica that prunes dead members
HEARTBEATS_PER_TIMEOUT = 4  # a member is declared dead only after several missed heartbeats


def new_replica_id() -> str:
    """A fresh id for this process start: the host name and a random suffix."""
    host = socket.gethostname().split(".")[0][:40] or "replica"
    return f"{host}-{secrets.token_hex(4)}"


class Cluster(Component):
    name = "cluster"

    def __init__(
        self,
        store: MembersPort,
        *,
        replica_id: str,
        timeout: float,
        retention: float,
        load: Callable[[], tuple[int, int]],
        clock: Callable[[], float] = time.time,
    ):
        """`load()` returns what this replica runs: (running executions, connected workers)."""
        if timeout <= 0:
            raise ValueError("member_timeout must be positive")
        self.store = store
        self.id = replica_id or new_replica_id()
        self.timeout = timeout
        self.interval = timeout / HEARTBEATS_PER_TIMEOUT
        self.retention = max(0.0, retention)
        self.address = ""
        self._load = load
        self._clock = clock
        self.start_time = clock()
        self._lease: Any = store.db.try_lock(PRUNE_LEASE)  # None on SQLite: one server, no one to agree with
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat: float | None = None  # clock() of the last heartbeat written
        self._last_error = ""

    def start(self) -> None:
        self._stop.clear()
        self.beat()  # the row exists once the server is up
        self._thread = threading.Thread(target=self._run, name="cluster-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._lease is not None:
            self._lease.close()

    def leave(self) -> None:
        """Remove this replica's row on a clean shutdown (a killed one is seen dead after the timeout)."""
        try:
            self.store.remove(self.id)
        except Exception as exc:
            log.warning("could not remove member %s: %s", self.id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
            self.prune()

    def beat(self) -> bool:
        """Write this replica's heartbeat row; False (and logged) when the database refused."""
        try:
            running, workers = self._load()
            now = self._clock()
            self.store.upsert(
                MemberRow(self.id, self.address, __version__, self.start_time, now, running, workers)
            )
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning("member %s: heartbeat failed: %s", self.id, self._last_error)
            return False
        self._last_beat, self._last_error = now, ""
        return True

    def prune(self) -> list[str]:
        """Delete members dead for longer than the retention, on the one replica holding the lease."""
        if self._lease is not None and not self._lease.held():
            return []
        try:
            gone = self.store.prune(self._clock() - self.timeout - self.retention)
        except Exception as exc:
            log.warning("pruning dead members failed: %s", exc)
            return []
        if gone:
            log.info("pruned dead members %s", ", ".join(gone))
        return gone

    def members(self) -> list[Member]:
        """Every member with its liveness. When the database cannot be read, this replica alone, from
        what it knows itself (GetHealth must answer during an outage)."""
        now = self._clock()
        try:
            rows = self.store.all()
        except Exception as exc:
            log.warning("reading the members failed: %s", exc)
            beat = self._last_beat or self.start_time
            running, workers = self._load()
            rows = [MemberRow(self.id, self.address, __version__, self.start_time, beat, running, workers)]
        return [
            Member(
                id=r.id,
                address=r.address,
                version=r.version,
                start_time=r.start_time,
                last_heartbeat=r.heartbeat_time,
                alive=now - r.heartbeat_time <= self.timeout,
                running_executions=r.running_executions,
                connected_workers=r.connected_workers,
                local=r.id == self.id,
            )
            for r in rows
        ]

    def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the heartbeat thread is not running")
        age = None if self._last_beat is None else self._clock() - self._last_beat
        if age is None or age > self.timeout:
            raise RuntimeError(
                f"no heartbeat written for {'ever' if age is None else f'{age:.1f}s'}"
                f" ({self._last_error or 'unknown'}): the other replicas see this one as dead"
            )

    def details(self) -> dict[str, Any]:
        return {"replica_id": self.id, "member_timeout": self.timeout}
