"""Schedules: CreateSchedule / Get / List / Delete / Trigger / Pause / Unpause through the SDK against a real
server, and the tick rules (overlap, catch-up, exactly once per tick) with a clock the test moves. The
kill -9 case runs real processes (test_schedules_recovery.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import voltorch
from fake_clock import FakeClock
from polling import until
from voltorch import AgentTask, ParameterSpec, Step, WaitStep, WorkflowTemplate
from voltorch_server.components.schedules import Schedule, Scheduler, tick_request_id

WAIT = 30.0
T0 = 1_800_000_000.0  # a round minute (UTC)

HOLD = WorkflowTemplate(name="hold", steps=[Step("w", WaitStep("go"))])
NOTE = WorkflowTemplate(
    name="note",
    parameters=[ParameterSpec("topic", required=True)],
    steps=[Step("t", AgentTask("Write about {{topic}}", ["documentation"]))],
)


def runs_of(client: voltorch.Client, schedule_id: str) -> list[voltorch.Execution]:
    return [e for e in client.workflows.list() if e.labels.get("schedule") == schedule_id]


def test_an_interval_schedule_starts_one_execution_per_tick(client):
    client.workflows.register_template(NOTE)
    first = time.time() + 0.3
    s = client.schedules.create(
        "note", {"topic": "tides"}, interval=3600, start_time=first, schedule_id="hourly-note"
    )
    assert s.id == "hourly-note" and s.next_tick_time.timestamp() == pytest.approx(first, abs=1e-3)
    (run,) = until(lambda: runs_of(client, "hourly-note"))
    assert run.request_id == tick_request_id("hourly-note", s.next_tick_time.timestamp())
    assert run.parameters == {"topic": "tides"}
    after = until(lambda: (x := client.schedules.get("hourly-note")).ticks_started == 1 and x)
    assert after.last_execution_id == run.id
    assert after.next_tick_time.timestamp() == pytest.approx(first + 3600, abs=1e-3)
    assert [x.id for x in client.schedules.list()] == ["hourly-note"]
    assert client.workflows.wait(run.id, timeout=WAIT).status == "completed"
    triggered = client.schedules.trigger("hourly-note", request_id="by-hand")
    assert client.schedules.trigger("hourly-note", request_id="by-hand").existing
    assert triggered.execution.labels == {"schedule": "hourly-note"} and not triggered.existing
    assert client.schedules.pause("hourly-note").paused
    assert not client.schedules.unpause("hourly-note").paused
    client.schedules.delete("hourly-note")
    with pytest.raises(voltorch.NotFoundError) as err:
        client.schedules.get("hourly-note")
    assert err.value.reason == "SCHEDULE_NOT_FOUND"


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"cron": "every day"}, "schedule.cron", "CRON_INVALID"),
        ({"cron": "0 9 * * *", "interval": 60}, "schedule.cron", "FIELD_INVALID"),
        ({}, "schedule.cron", "FIELD_INVALID"),
        ({"interval": 0.5}, "schedule.interval", "DURATION_INVALID"),
        ({"cron": "0 0 30 2 *"}, "schedule.cron", "CRON_INVALID"),  # February 30th: was INTERNAL
        # its next_tick_time was past year 9999: no client could list the schedules any more
        ({"interval": 10**11}, "schedule.interval", "DURATION_INVALID"),
        ({"cron": "0 9 * * *", "time_zone": "Mars/Olympus"}, "schedule.time_zone", "FIELD_INVALID"),
        ({"cron": "0 9 * * *", "schedule_id": "Bad Id"}, "schedule.id", "FIELD_INVALID"),
        ({"cron": "0 9 * * *", "parameters": {"topic": 3}}, "parameters.topic", "PARAMETERS_INVALID"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(client, kwargs, field, reason):
    client.workflows.register_template(NOTE)
    params = kwargs.pop("parameters", {"topic": "x"})
    with pytest.raises(voltorch.InvalidArgumentError) as err:
        client.schedules.create("note", params, **kwargs)
    assert err.value.reason == reason and err.value.field_violations[0].field == field


def test_unknown_templates_and_taken_ids_are_refused(client):
    with pytest.raises(voltorch.NotFoundError) as err:
        client.schedules.create("nope", cron="0 9 * * *")
    assert err.value.reason == "TEMPLATE_NOT_FOUND"
    client.workflows.register_template(HOLD)
    client.schedules.create("hold", cron="0 9 * * *", schedule_id="daily")
    with pytest.raises(voltorch.AlreadyExistsError) as taken:
        client.schedules.create("hold", cron="0 9 * * *", schedule_id="daily")
    assert taken.value.reason == "SCHEDULE_EXISTS"


# -- tick rules, with a clock the test moves -----------------------------------------------------------------


@pytest.fixture
def scheduler(server, client):
    """A scheduler on the server's database and workflow engine, driven by hand (its loop is not started;
    the server's own scheduler is stopped so that only the test moves time)."""
    client.workflows.register_template(HOLD)
    server.runtime.schedules.stop()
    return Scheduler(
        server.runtime.stores.schedules, server.runtime.workflows, clock=FakeClock(T0), grace=5.0
    )


def test_cron_ticks_follow_the_time_zone(scheduler):
    s = scheduler.create(
        Schedule(id="paris-9am", template_name="hold", cron="0 9 * * *", time_zone="Europe/Paris")
    )
    # 2027-01-15 08:00 UTC is 09:00 in Paris (UTC+1 in winter)
    assert s.next_after(1_799_999_999.0) == 1_800_000_000.0
    utc = scheduler.create(Schedule(id="utc-9am", template_name="hold", cron="0 9 * * *"))
    assert utc.next_after(1_799_999_999.0) - s.next_after(1_799_999_999.0) == 3600


@pytest.mark.parametrize(
    ("overlap", "running_after"),
    [("skip", 1), ("allow", 2), ("buffer_one", 1)],
)
def test_overlap_policies(client, scheduler, overlap, running_after):
    s = scheduler.create(Schedule(id=f"o-{overlap}", template_name="hold", interval=60.0, overlap=overlap))
    scheduler.tick(T0 + 60)
    scheduler.tick(T0 + 120)  # the first execution still waits for its signal
    runs = runs_of(client, s.id)
    assert len(runs) == running_after
    got = scheduler.get(s.id)
    assert got.ticks_started == running_after
    if overlap == "skip":
        assert got.ticks_skipped == 1
    if overlap == "buffer_one":
        assert got.buffered_tick == T0 + 120
        scheduler.tick(T0 + 130)
        assert len(runs_of(client, s.id)) == 1  # still running: the tick stays buffered
        client.workflows.signal(runs[0].id, "go")
        until(lambda: client.workflows.get(runs[0].id).done)
        scheduler.tick(T0 + 140)
        later = runs_of(client, s.id)
        assert len(later) == 2 and scheduler.get(s.id).buffered_tick is None
        assert tick_request_id(s.id, T0 + 120) in {e.request_id for e in later}


def test_a_buffered_tick_that_cannot_start_is_dropped_once(client, scheduler):
    """A buffered tick whose template no longer accepts the schedule's parameters is skipped once, not
    retried (and counted skipped) on every pass of the loop while the schedule waits for its next tick."""
    s = scheduler.create(Schedule(id="b", template_name="hold", interval=60.0, overlap="buffer_one"))
    scheduler.tick(T0 + 60)
    scheduler.tick(T0 + 120)  # buffered behind the first execution
    (run,) = runs_of(client, s.id)
    client.workflows.register_template(replace(HOLD, parameters=[ParameterSpec("topic", required=True)]))
    client.workflows.signal(run.id, "go")
    until(lambda: client.workflows.get(run.id).done)
    for now in (T0 + 130, T0 + 131, T0 + 132):
        scheduler.tick(now)
    got = scheduler.get(s.id)
    assert (got.buffered_tick, got.ticks_skipped, got.next_tick) == (None, 1, T0 + 180)
    assert len(runs_of(client, s.id)) == 1


@pytest.mark.parametrize(("catchup", "started"), [("all", 10), ("latest", 1), ("skip", 0)])
def test_catch_up_after_downtime(client, scheduler, catchup, started):
    s = scheduler.create(
        Schedule(id=f"c-{catchup}", template_name="hold", interval=60.0, overlap="allow", catchup=catchup)
    )
    scheduler.tick(T0 + 630)  # ten ticks passed while nothing ran; the last one 30 s ago (late)
    assert len(runs_of(client, s.id)) == started
    got = scheduler.get(s.id)
    assert (got.ticks_started, got.ticks_skipped) == (started, 10 - started)
    assert got.next_tick == T0 + 660


def test_a_tick_is_started_once_even_when_the_cursor_was_lost(client, scheduler):
    """A server killed after starting a tick's execution but before moving the cursor starts the same tick
    again after the restart: the deterministic request id gives the same execution back."""
    s = scheduler.create(Schedule(id="once", template_name="hold", interval=60.0, overlap="allow"))
    scheduler.tick(T0 + 60)
    (run,) = runs_of(client, s.id)
    with scheduler.db.write() as tx:  # the cursor write is lost
        scheduler.store.save(tx, replace(scheduler.get(s.id), next_tick=T0 + 60, ticks_started=0))
    scheduler.tick(T0 + 61)
    assert [e.id for e in runs_of(client, s.id)] == [run.id]
    assert scheduler.get(s.id).next_tick == T0 + 120


def test_a_paused_schedule_starts_nothing_and_unpausing_skips_what_passed(client, scheduler):
    s = scheduler.create(Schedule(id="p", template_name="hold", interval=60.0, overlap="allow"))
    scheduler.pause(s.id)
    scheduler.tick(T0 + 300)
    assert runs_of(client, s.id) == []
    scheduler.clock.now = T0 + 300
    assert scheduler.unpause(s.id).next_tick == T0 + 360


def test_health_shows_the_schedules(client):
    client.workflows.register_template(HOLD)
    client.schedules.create("hold", cron="0 9 * * *", schedule_id="morning")
    (sched,) = [c for c in client.health(refresh=True).components if c.name == "schedules"]
    assert sched.status == "HEALTHY" and sched.details["active_schedules"] == "1"
    assert sched.details["next_tick"].endswith(":00:00+00:00")
