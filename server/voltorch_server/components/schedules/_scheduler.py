"""The scheduler: one thread that starts each due tick of each schedule as one workflow execution.

Exactly once per tick: an execution is started with the tick's deterministic request id before the
schedule's cursor (next_tick) moves past it, so a server killed between the two starts the same tick
again after a restart and gets the execution it already started back — never a second one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..._ids import new_id
from ...errors import AlreadyExists, NotFound, VoltorchError
from ..shared import Component, decode_token, encode_token, fitting, page_size, wire_bytes
from ..workflows import Execution, WorkflowEngine
from ..workflows.templates import apply_parameters
from ._model import MAX_CATCHUP, Catchup, Overlap, Schedule, first_tick, tick_request_id, validate
from ._store_port import SchedulesPort

log = logging.getLogger("voltorch.schedules")

GRACE = 5.0  # a tick started at most this late is on time; later ones are "missed" (catch-up policy)
POLL = 1.0  # longest sleep of the loop (buffered ticks wait for their previous execution to end)


SCHEDULER_LEASE = 0x766F6C04  # PostgreSQL advisory lock: the replica that starts due schedule ticks


class Scheduler(Component):
    name = "schedules"

    def __init__(
        self,
        store: SchedulesPort,
        workflows: WorkflowEngine,
        *,
        clock: Callable[[], float] = time.time,
        grace: float = GRACE,
    ):
        self.store = store
        self.db = store.db  # its transactions (`write()`)
        self.workflows = workflows
        self.clock = clock
        self.grace = grace
        self._wanted = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one tick pass at a time (the loop, TriggerSchedule, tests)
        # Replicas on one PostgreSQL: the one holding this advisory lock ticks (None on SQLite: one server).
        self._lease: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._lease = self.db.try_lock(SCHEDULER_LEASE)
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._lease is not None:
            self._lease.close()
            self._lease = None

    def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the scheduler thread is not running")

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"active_schedules": self.store.active()}
        earliest = self.store.earliest()
        if earliest is not None:
            out["next_tick"] = datetime.fromtimestamp(earliest, UTC).isoformat(timespec="seconds")
        return out

    def _wake(self) -> None:
        with self._wanted:
            self._wanted.notify_all()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if (
                    self._lease is None or self._lease.held()
                ):  # one replica ticks; it moves when that one dies
                    self.tick(self.clock())
            except Exception:
                log.exception("scheduler pass failed")
            earliest = self.store.earliest()
            delay = POLL if earliest is None else min(max(earliest - self.clock(), 0.0), POLL)
            with self._wanted:
                if not self._stopping.is_set():
                    self._wanted.wait(delay)

    # -- API ---------------------------------------------------------------------------------------------

    def create(self, s: Schedule) -> Schedule:
        validate(s)
        t = self.workflows.get_template(s.template_name, s.template_version)
        params = apply_parameters(t.parameters, s.parameters)
        now = self.clock()
        s = replace(
            s, id=s.id or new_id("sch"), parameters=params, create_time=now, ticks_started=0, ticks_skipped=0
        )
        s = replace(s, next_tick=first_tick(s, now), last_tick=None, last_execution_id="", buffered_tick=None)
        with self.db.write() as tx:
            if self.store.get(s.id, tx) is not None:
                raise AlreadyExists(
                    f"schedule {s.id!r} exists", reason="SCHEDULE_EXISTS", metadata={"schedule_id": s.id}
                )
            self.store.insert(tx, s)
        self._wake()
        return s

    def get(self, schedule_id: str) -> Schedule:
        s = self.store.get(schedule_id) if schedule_id else None
        if s is None:
            raise NotFound("schedule", schedule_id)
        return s

    def list(self, size: int = 0, token: str = "") -> tuple[list[Schedule], str]:
        n = page_size(size)
        after = decode_token(token, {}) or ""
        items = self.store.page(str(after), n + 1)
        page = items[: fitting(_weight(s) for s in items[:n])]  # ends early once its schedules pass ~1 MiB
        return page, encode_token({}, page[-1].id) if len(items) > len(page) else ""

    def delete(self, schedule_id: str) -> None:
        with self._lock, self.db.write() as tx:
            if not schedule_id or not self.store.delete(tx, schedule_id):
                raise NotFound("schedule", schedule_id)

    def pause(self, schedule_id: str) -> Schedule:
        return self._update(schedule_id, lambda s: replace(s, paused=True))

    def unpause(self, schedule_id: str) -> Schedule:
        """Ticks missed while paused are not started: the next one is computed from now."""
        now = self.clock()
        return self._update(
            schedule_id,
            lambda s: s if not s.paused else replace(s, paused=False, next_tick=s.next_after(now)),
        )

    def trigger(self, schedule_id: str, request_id: str = "") -> tuple[Execution, bool]:
        s = self.get(schedule_id)
        execution, existing = self._start(s, request_id)
        self._update(schedule_id, lambda cur: replace(cur, last_execution_id=execution.id))
        return execution, existing

    def _update(self, schedule_id: str, change: Callable[[Schedule], Schedule]) -> Schedule:
        with self._lock, self.db.write() as tx:  # not in the middle of a tick pass (it saves what it read)
            s = self.store.get(schedule_id, tx) if schedule_id else None
            if s is None:
                raise NotFound("schedule", schedule_id)
            s = change(s)
            self.store.save(tx, s)
        self._wake()
        return s

    # -- ticks -------------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Start what is due at `now` (the loop calls it; tests call it with their own clock)."""
        with self._lock:
            for s in self.store.due(now):
                try:
                    self._run_due(s, now)
                except VoltorchError as exc:  # e.g. the template changed: record, try again at the next tick
                    self.record_error(
                        "SCHEDULE_TICK_FAILED", f"schedule {s.id}: {exc}", details={"schedule_id": s.id}
                    )
                    # the failed ticks are dropped, a buffered one too: else every pass would try it again
                    skipped = max(
                        int(s.buffered_tick is not None)
                        + int(s.next_tick is not None and s.next_tick <= now),
                        1,
                    )
                    self._save(
                        replace(
                            s,
                            next_tick=s.next_after(now),
                            buffered_tick=None,
                            ticks_skipped=s.ticks_skipped + skipped,
                        )
                    )

    def _run_due(self, s: Schedule, now: float) -> None:
        if s.buffered_tick is not None and not self._overlaps(s):
            s = self._start_tick(replace(s, buffered_tick=None), s.buffered_tick)
        ticks: list[float] = []
        t = s.next_tick
        while t is not None and t <= now and len(ticks) < MAX_CATCHUP + 1:
            ticks.append(t)
            t = s.next_after(t)
        if not ticks:
            self._save(s)
            return
        on_time = now - ticks[-1] <= self.grace
        if s.catchup == Catchup.ALL:
            chosen = ticks[-MAX_CATCHUP:]
        elif s.catchup == Catchup.LATEST or on_time:
            chosen = ticks[-1:]
        else:
            chosen = []
        skipped = len(ticks) - len(chosen)
        for tick in chosen:
            if s.overlap != Overlap.ALLOW and self._overlaps(s):
                if s.overlap == Overlap.BUFFER_ONE and s.buffered_tick is None:
                    s = replace(s, buffered_tick=tick)
                else:
                    skipped += 1
                continue
            s = self._start_tick(s, tick)
        # The cursor moves past every tick handled, only after their executions were started.
        self._save(
            replace(s, next_tick=s.next_after(max(now, ticks[-1])), ticks_skipped=s.ticks_skipped + skipped)
        )

    def _overlaps(self, s: Schedule) -> bool:
        if not s.last_execution_id:
            return False
        try:
            return not self.workflows.get(s.last_execution_id).terminal
        except NotFound:
            return False

    def _start_tick(self, s: Schedule, tick: float) -> Schedule:
        execution, existing = self._start(s, tick_request_id(s.id, tick))
        started = s.ticks_started + (0 if existing else 1)
        return replace(s, last_tick=tick, last_execution_id=execution.id, ticks_started=started)

    def _start(self, s: Schedule, request_id: str) -> tuple[Execution, bool]:
        return self.workflows.start_execution(
            s.template_name,
            template_version=s.template_version,
            parameters=s.parameters,
            request_id=request_id,
            labels={"schedule": s.id},
        )

    def _save(self, s: Schedule) -> None:
        """Write what the scheduler keeps, unless the schedule was deleted or changed meanwhile."""
        with self.db.write() as tx:
            current = self.store.get(s.id, tx)
            if current is None or current.paused:
                return
            self.store.save(tx, s)


def _weight(s: Schedule) -> int:
    """Roughly what a schedule weighs in a ListSchedules answer: its parameters (any size the template
    takes) and its description."""
    return 256 + wire_bytes(json.dumps(s.parameters, separators=(",", ":"))) + wire_bytes(s.description)
