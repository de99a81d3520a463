"""The run table (coordinations in flight) and the journal (how the engine's state changes): the two
pieces the engine, its agent registry and its dispatcher share, each given to them explicitly."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ...frozen import made
from ...storage import Tx
from ..events import EventLog, prepare_own
from ..shared import AgingQueue
from ._runs import SOURCE, After, Run, SelectionTexts, Unit
from ._store_port import CoordinationPort

log = logging.getLogger("voltorch.coordination")


class Moved(Exception):
    """A coordination's write found it owned by another replica (adopted after this one was presumed dead)."""

    def __init__(self, run: Run):
        super().__init__(f"coordination {run.id} is owned by another replica")
        self.run = run


class RunTable:
    """Live coordinations by id, the one aging priority queue of their units and the heap of their
    deadlines. Guarded by the engine lock."""

    def __init__(self, aging: float):
        self.live: dict[str, Run] = {}
        self.queue: AgingQueue[Unit] = AgingQueue(aging)
        self.deadlines: list[tuple[float, str]] = []
        self.texts = SelectionTexts()  # the selections' JSON, their candidates' parts kept

    def position(self, run: Run) -> int:
        """1-based place of a queued coordination among the queued ones (0 when not queued)."""
        if run.status != "queued":
            return 0
        seen: set[str] = set()
        for unit in self.queue:
            if unit.run.id not in seen:
                seen.add(unit.run.id)
                if unit.run is run:
                    return len(seen)
        return 0

    @property
    def active_count(self) -> int:
        return sum(1 for r in self.live.values() if not r.terminal)

    def clear(self) -> None:
        self.live.clear()
        self.queue = AgingQueue(self.queue.aging)
        self.deadlines.clear()


class Journal:
    """Every state change happens in one SQLite transaction together with its events, under the
    database's writer lock and then the engine lock (always in that order; the engine lock is never
    held while waiting for the database). What must wait for the commit — waking waiters, cancelling,
    closing runtimes, launching agents — runs after it, unlocked."""

    def __init__(
        self, store: CoordinationPort, events: EventLog, lock: threading.RLock, runs: RunTable, owner: str
    ):
        """`owner`: this replica's id; a coordination's row is written only while it names this replica."""
        self.owner = owner
        self.store = store
        self.db = store.db
        self.events = events
        self.lock = lock
        self.runs = runs

    @contextmanager
    def txn(self, *, group: bool = False) -> Iterator[tuple[Tx, After]]:
        """A transaction with the engine lock held inside it; after-commit work runs unlocked. `group`: it
        may share its COMMIT with concurrent ones (SQLite's `write(group=True)`; the caller holds no lock)."""
        after = made(After, launches=[], cancels=[], finished=[], calls=[])  # After() without __init__
        try:
            with self.db.write(group=group) as tx, self.lock:
                yield tx, after
        except Moved as moved:  # nothing of the transaction was written; the run is another replica's now
            self.forget(moved.run)
            return
        self.run_after(after)

    def save(self, tx: Tx, run: Run) -> None:
        """Write a coordination's mutable columns, fenced: Moved (the transaction must roll back) when
        another replica has adopted it since. Nothing yet for a new one whose row is still unwritten: its
        insert (write_new) carries them."""
        if run.unwritten is not None:
            return
        if not self.store.update(tx, run.row(self.runs.texts), self.owner):
            raise Moved(run)

    def forget(self, run: Run) -> None:
        """Drop a coordination another replica adopted: its agent tasks here are told to stop."""
        log.warning(
            "coordination %s: not written: another replica adopted it; this replica stops running it", run.id
        )
        self.drop(run, "coordination moved to another replica")

    def drop(self, run: Run, reason: str = "") -> None:
        """Stop running a coordination here (another replica owns it now): out of the run table and the
        queue, its agent tasks told to stop, local waiters woken (they follow it through its events)."""
        with self.lock:
            if self.runs.live.get(run.id) is run:
                del self.runs.live[run.id]
            for u in run.units.values():
                self.runs.queue.remove(u)
            cancels = [u.cancel for u in run.units.values() if u.cancel]
        for c in cancels:
            c.set(reason or "coordination handed over to another replica")
        run.done.set()

    def run_after(self, after: After) -> None:
        if after.finished:
            with self.lock:
                live = self.runs.live
                for run in after.finished:
                    if live.get(run.id) is run:
                        del live[run.id]
        for run in after.finished:
            run.done.set()
        for signal, reason in after.cancels:
            signal.set(reason)
        for fn in after.calls:
            try:
                fn()
            except Exception:
                log.exception("closing an agent runtime failed")
        for launch in after.launches:
            launch()

    def write_new(self, tx: Tx, run: Run) -> None:
        """Insert a new coordination's row as it stands now (its fixed columns and its current state)."""
        fixed, run.unwritten = run.unwritten, None
        if fixed is not None:
            self.store.insert(tx, {**run.row(self.runs.texts), **fixed})

    def emit(
        self,
        tx: Tx,
        type_: str,
        data: dict[str, Any],
        run: Run | None = None,
        *,
        raw: Mapping[str, str] | None = None,
    ) -> None:
        """Append one of the engine's events; `raw`: more members of its data, as JSON text already made."""
        if run is None:
            ev = prepare_own(type_, SOURCE, data, raw=raw)
        else:
            ev = prepare_own(
                type_,
                SOURCE,
                data,
                correlation_id=run.correlation_id,
                priority=run.priority,
                traceparent=run.traceparent,
                raw=raw,
            )
        self.events.append(tx, [ev])
