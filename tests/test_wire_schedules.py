"""voltorch.wire's schedule mapping: the server's schedules are written by it as they are (its times to the
nanosecond), a CreateSchedule request is read by it strictly, and the SDK's Schedule survives a round
trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from voltorch import wire
from voltorch.v1 import workflows_pb2
from voltorch_server.components.schedules import Schedule
from voltorch_server.errors import InvalidArgument
from voltorch_server.servicers.workflows import schedule_from_pb, schedule_pb

T = 1764589908  # whole seconds; the fractions below are exact in binary


def _struct(obj: dict) -> Struct:
    s = Struct()
    s.update(obj)
    return s


def _server_schedule() -> Schedule:
    """An interval schedule that has ticked: every field set."""
    return Schedule(
        id="nightly",
        template_name="tpl",
        template_version=2,
        parameters={"a": 1, "b": ["x", {"c": None}]},
        interval=90.5,
        time_zone="Europe/Paris",
        overlap="buffer_one",
        catchup="all",
        paused=True,
        description="every 90.5 s",
        start_time=T + 0.25,
        next_tick=T + 181.25,
        last_tick=T + 90.75,
        last_execution_id="e7",
        buffered_tick=T + 90.75,  # the scheduler's own: not on the wire
        ticks_started=12,
        ticks_skipped=3,
        create_time=T + 0.0625,
    )


def _expected_schedule() -> workflows_pb2.Schedule:
    """What the server wrote for _server_schedule() before the mapping moved, spelled out."""
    return workflows_pb2.Schedule(
        id="nightly",
        template_name="tpl",
        template_version=2,
        parameters=_struct({"a": 1, "b": ["x", {"c": None}]}),
        interval=Duration(seconds=90, nanos=500_000_000),
        time_zone="Europe/Paris",
        overlap=workflows_pb2.OVERLAP_POLICY_BUFFER_ONE,
        catchup=workflows_pb2.CATCHUP_POLICY_ALL,
        paused=True,
        description="every 90.5 s",
        next_tick_time=Timestamp(seconds=T + 181, nanos=250_000_000),
        last_tick_time=Timestamp(seconds=T + 90, nanos=750_000_000),
        last_execution_id="e7",
        create_time=Timestamp(seconds=T, nanos=62_500_000),
        ticks_started=12,
        ticks_skipped=3,
        start_time=Timestamp(seconds=T, nanos=250_000_000),
    )


def _same_bytes(got: workflows_pb2.Schedule, expected: workflows_pb2.Schedule) -> bool:
    return got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_the_server_writes_a_schedule_as_before() -> None:
    got = schedule_pb(_server_schedule())
    assert got == _expected_schedule()
    assert _same_bytes(got, _expected_schedule())  # byte for byte


def test_a_new_cron_schedule_writes_no_optional_field_but_parameters_and_create_time() -> None:
    s = Schedule(id="c", template_name="t", cron="0 9 * * *", create_time=T)
    expected = workflows_pb2.Schedule(
        id="c",
        template_name="t",
        parameters=Struct(),  # present, empty: as before
        cron="0 9 * * *",
        overlap=workflows_pb2.OVERLAP_POLICY_SKIP,
        catchup=workflows_pb2.CATCHUP_POLICY_LATEST,
        create_time=Timestamp(seconds=T),
    )
    got = schedule_pb(s)
    assert got == expected and _same_bytes(got, expected)
    absent = ("interval", "start_time", "next_tick_time", "last_tick_time")
    assert [f for f in absent if got.HasField(f)] == []


def test_server_times_keep_their_nanoseconds() -> None:
    when = 1764589908.123456789
    got = schedule_pb(Schedule(id="c", template_name="t", cron="* * * * *", next_tick=when, create_time=T))
    assert got.next_tick_time.nanos % 1000 != 0 and wire.from_timestamp(got.next_tick_time) == when


def test_a_create_request_is_read_with_its_input_fields_only() -> None:
    request = _expected_schedule()  # output-only fields set too: ignored
    s = schedule_from_pb(request)
    assert s == Schedule(
        id="nightly",
        template_name="tpl",
        template_version=2,
        parameters={"a": 1, "b": ["x", {"c": None}]},
        interval=90.5,
        time_zone="Europe/Paris",
        overlap="buffer_one",
        catchup="all",
        paused=True,
        description="every 90.5 s",
        start_time=T + 0.25,
    )
    bare = schedule_from_pb(workflows_pb2.Schedule(template_name="t", cron="* * * * *"))
    assert (bare.overlap, bare.catchup, bare.interval, bare.start_time) == ("skip", "latest", None, None)
    assert schedule_from_pb(workflows_pb2.Schedule(interval=Duration())).interval is None  # zero = unset


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (
            workflows_pb2.Schedule(overlap=cast(workflows_pb2.OverlapPolicy, 9)),
            "schedule.overlap",
            "ENUM_VALUE_INVALID",
        ),
        (
            workflows_pb2.Schedule(catchup=cast(workflows_pb2.CatchupPolicy, 9)),
            "schedule.catchup",
            "ENUM_VALUE_INVALID",
        ),
        (workflows_pb2.Schedule(interval=Duration(seconds=-1)), "schedule.interval", "DURATION_INVALID"),
    ],
)
def test_a_bad_create_request_names_the_field(
    request_: workflows_pb2.Schedule, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        schedule_from_pb(request_)
    assert err.value.violations[0].field == field and err.value.reason == reason


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_the_sdk_schedule_survives_a_round_trip() -> None:
    read = wire.schedule_from_pb(schedule_pb(_server_schedule()))
    assert read == wire.Schedule(
        id="nightly",
        template_name="tpl",
        template_version=2,
        parameters={"a": 1, "b": ["x", {"c": None}]},
        cron="",
        interval=90.5,
        time_zone="Europe/Paris",
        overlap="buffer_one",
        catchup="all",
        paused=True,
        description="every 90.5 s",
        start_time=_at(T + 0.25),
        next_tick_time=_at(T + 181.25),
        last_tick_time=_at(T + 90.75),
        last_execution_id="e7",
        create_time=_at(T + 0.0625),
        ticks_started=12,
        ticks_skipped=3,
    )
    again = wire.schedule_pb(read, next_tick_time=read.next_tick_time, last_tick_time=read.last_tick_time)
    assert wire.schedule_from_pb(again) == read and _same_bytes(again, _expected_schedule())


def test_the_sdk_create_request_as_before() -> None:
    """What SchedulesClient.create sent: the input fields, parameters always, no output field."""
    new = wire.Schedule.new(
        "tpl",
        {"a": 1},
        interval=timedelta(minutes=1, microseconds=5),
        overlap="allow",
        catchup="skip",
        start_time=_at(T + 0.5),
        schedule_id="s1",
        version=3,
        description="d",
    )
    got = wire.schedule_pb(new, next_tick_time=None, last_tick_time=None)
    expected = workflows_pb2.Schedule(
        id="s1",
        template_name="tpl",
        template_version=3,
        parameters=_struct({"a": 1}),
        interval=Duration(seconds=60, nanos=5000),
        overlap=workflows_pb2.OVERLAP_POLICY_ALLOW,
        catchup=workflows_pb2.CATCHUP_POLICY_SKIP,
        description="d",
        start_time=Timestamp(seconds=T, nanos=500_000_000),
    )
    assert got == expected and _same_bytes(got, expected)
    bare = wire.schedule_pb(
        wire.Schedule.new("t", cron="* * * * *"), next_tick_time=None, last_tick_time=None
    )
    assert bare == workflows_pb2.Schedule(
        template_name="t",
        parameters=Struct(),
        cron="* * * * *",
        overlap=workflows_pb2.OVERLAP_POLICY_SKIP,
        catchup=workflows_pb2.CATCHUP_POLICY_LATEST,
    )
    with pytest.raises(ValueError, match="unknown overlap policy 'never'"):
        wire.Schedule.new("t", cron="* * * * *", overlap="never")
