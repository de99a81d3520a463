"""The scheduler through its Python API with its store and the workflow engine on one database, SQLite and
PostgreSQL.

A server on PostgreSQL keeps schedules in each replica's local SQLite until issue 12 moves them, so the
server-level schedule tests (test_schedules.py) never put them on PostgreSQL; these do: schedules kept,
paged in id order, deleted; due ticks started once with the cursor, counters and buffered tick kept;
paused schedules left out of the due ones, the count and the earliest tick."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engines import Engines, build
from fake_clock import FakeClock
from voltorch_server.components.schedules import Schedule, Scheduler, tick_request_id
from voltorch_server.components.workflows import StepSpec, Template, WaitSpec
from voltorch_server.errors import AlreadyExists, NotFound
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlSchedules

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)

T0 = 1_800_000_000.0  # a round minute (UTC)


@pytest.fixture
def engines(db: Database) -> Iterator[Engines]:
    e = build(db)
    e.workflows.register_template(Template(name="hold", steps=(StepSpec("w", WaitSpec("go")),)))
    yield e
    e.stop()


@pytest.fixture
def scheduler(db: Database, engines: Engines) -> Scheduler:
    """Driven by hand with a clock the test moves (its loop is not started)."""
    return Scheduler(SqlSchedules(db), engines.workflows, clock=FakeClock(T0), grace=5.0)


def test_schedules_are_kept_paged_in_id_order_and_deleted(scheduler: Scheduler) -> None:
    ids = ["b", "a1", "a.y", "a-z", "9x"]
    for i in ids:
        scheduler.create(
            Schedule(id=i, template_name="hold", cron="0 9 * * *", time_zone="Europe/Paris", description=i)
        )
    with pytest.raises(AlreadyExists):
        scheduler.create(Schedule(id="b", template_name="hold", interval=60.0))
    page, token = scheduler.list(size=2)
    seen = [s.id for s in page]
    while token:
        page, token = scheduler.list(size=2, token=token)
        seen += [s.id for s in page]
    assert seen == sorted(ids)  # byte order, as SQLite compares text
    got = scheduler.get("a.y")
    assert (got.cron, got.interval, got.time_zone) == ("0 9 * * *", None, "Europe/Paris")
    assert (got.description, got.template_version, got.paused, got.parameters) == ("a.y", 0, False, {})
    assert got.next_tick == got.next_after(T0) and got.create_time == T0
    scheduler.delete("a.y")
    with pytest.raises(NotFound):
        scheduler.get("a.y")
    with pytest.raises(NotFound):
        scheduler.delete("a.y")


def test_due_ticks_start_once_and_the_cursor_and_counters_are_kept(
    scheduler: Scheduler, engines: Engines
) -> None:
    s = scheduler.create(
        Schedule(id="every-minute", template_name="hold", interval=60.0, overlap="buffer_one")
    )
    assert s.next_tick == T0 + 60
    scheduler.tick(T0 + 59)
    assert scheduler.get(s.id).ticks_started == 0
    scheduler.tick(T0 + 60)
    first = scheduler.get(s.id)
    assert (first.ticks_started, first.last_tick, first.next_tick) == (1, T0 + 60, T0 + 120)
    run = engines.workflows.get(first.last_execution_id)
    assert run.request_id == tick_request_id(s.id, T0 + 60) and run.labels == {"schedule": s.id}
    scheduler.tick(T0 + 120)  # the first run still waits for its signal: the tick is buffered
    buffered = scheduler.get(s.id)
    assert (buffered.ticks_started, buffered.buffered_tick) == (1, T0 + 120)
    engines.workflows.signal(run.id, "go", {}, sender="test")
    assert engines.finished(run.id).status == "completed"
    scheduler.tick(T0 + 121)
    after = scheduler.get(s.id)
    assert (after.ticks_started, after.buffered_tick, after.last_tick) == (2, None, T0 + 120)
    assert engines.workflows.get(after.last_execution_id).request_id == tick_request_id(s.id, T0 + 120)


def test_paused_schedules_are_not_due_counted_or_next(scheduler: Scheduler) -> None:
    scheduler.create(Schedule(id="soon", template_name="hold", interval=60.0, overlap="allow"))
    scheduler.create(Schedule(id="later", template_name="hold", interval=600.0, overlap="allow"))
    assert scheduler.details()["active_schedules"] == 2
    assert scheduler.store.earliest() == T0 + 60
    scheduler.pause("soon")
    assert scheduler.details()["active_schedules"] == 1
    assert scheduler.store.earliest() == T0 + 600
    assert [s.id for s in scheduler.store.due(T0 + 600)] == ["later"]
    scheduler.tick(T0 + 300)
    assert scheduler.get("soon").ticks_started == 0
    scheduler.clock.now = T0 + 300  # type: ignore[attr-defined]
    assert scheduler.unpause("soon").next_tick == T0 + 360
    assert [s.id for s in scheduler.store.due(T0 + 600)] == ["soon", "later"]
