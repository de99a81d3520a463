"""A schedule: which template to start, when (a cron expression in a time zone, or an interval), and what to
do with ticks that overlap a running execution or were missed while the server was down. Tick times are
pure functions of the definition, so every replica and every restart computes the same ones."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ...errors import InvalidArgument

ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
MIN_INTERVAL = 1.0
MAX_INTERVAL = 366 * 24 * 3600.0  # like waits and timers: a tick time must stay a Timestamp (year <= 9999)
LAST_TICK = 253_402_300_799.0  # 9999-12-31T23:59:59Z
MAX_CATCHUP = 100  # most missed ticks CatchupPolicy.ALL starts


class Overlap(StrEnum):
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    ALLOW = "allow"


class Catchup(StrEnum):
    SKIP = "skip"
    LATEST = "latest"
    ALL = "all"


@dataclass(frozen=True)
class Schedule:
    id: str
    template_name: str
    template_version: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str = ""
    interval: float | None = None
    time_zone: str = ""
    overlap: str = Overlap.SKIP
    catchup: str = Catchup.LATEST
    paused: bool = False
    description: str = ""
    start_time: float | None = None
    # kept by the scheduler
    next_tick: float | None = None
    last_tick: float | None = None
    last_execution_id: str = ""
    buffered_tick: float | None = None
    ticks_started: int = 0
    ticks_skipped: int = 0
    create_time: float = 0.0

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone or "UTC")

    def next_after(self, t: float) -> float:
        """The first tick strictly after t."""
        if self.interval:
            anchor = self.start_time if self.start_time is not None else self.create_time + self.interval
            if t < anchor:
                return anchor
            return anchor + (math.floor((t - anchor) / self.interval) + 1) * self.interval
        base = max(t, (self.start_time or t) - 1e-6)
        it = croniter(self.cron, datetime.fromtimestamp(base, self.zone()))
        return it.get_next(datetime).timestamp()


def first_tick(s: Schedule, now: float) -> float:
    """The first tick after now; INVALID_ARGUMENT when there is none before year 10000 (a cron that never
    matches, February 30th, say: croniter gives up)."""
    try:
        tick = s.next_after(now)
    except (ValueError, OverflowError):
        tick = math.inf
    if tick > LAST_TICK:
        if s.cron:
            raise InvalidArgument("schedule.cron", f"{s.cron!r} never fires", reason="CRON_INVALID")
        raise InvalidArgument("schedule.start_time", "no tick before year 10000", reason="TIMESTAMP_INVALID")
    return tick


def tick_request_id(schedule_id: str, tick: float) -> str:
    """The deterministic request id of one tick: a restarted server that starts it again gets the same
    execution back."""
    when = datetime.fromtimestamp(tick, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"schedule/{schedule_id}/{when}"


def validate(s: Schedule) -> None:
    """INVALID_ARGUMENT naming the field (schedule.<field>) for a malformed definition."""
    f = "schedule."
    if s.id and not ID_RE.fullmatch(s.id):
        raise InvalidArgument(
            f + "id", "a schedule id is 1..128 of [a-z0-9._-], starting with a letter or digit"
        )
    if not s.template_name:
        raise InvalidArgument(f + "template_name", "a template name is required", reason="FIELD_REQUIRED")
    if s.template_version < 0:
        raise InvalidArgument(f + "template_version", "must not be negative")
    if bool(s.cron) == bool(s.interval):
        raise InvalidArgument(f + "cron", "set exactly one of cron or interval")
    if s.interval is not None and not MIN_INTERVAL <= s.interval <= MAX_INTERVAL:
        raise InvalidArgument(
            f + "interval", f"at least {MIN_INTERVAL:g} s and at most a year", reason="DURATION_INVALID"
        )
    if s.cron and not croniter.is_valid(s.cron):
        raise InvalidArgument(f + "cron", f"{s.cron!r} is not a cron expression", reason="CRON_INVALID")
    if s.time_zone:
        try:
            ZoneInfo(s.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(f + "time_zone", f"unknown time zone {s.time_zone!r}") from None
    if s.overlap not in tuple(Overlap):
        raise InvalidArgument(
            f + "overlap", f"unknown overlap policy {s.overlap!r}", reason="ENUM_VALUE_INVALID"
        )
    if s.catchup not in tuple(Catchup):
        raise InvalidArgument(
            f + "catchup", f"unknown catch-up policy {s.catchup!r}", reason="ENUM_VALUE_INVALID"
        )
    if len(s.description) > 4096:
        raise InvalidArgument(f + "description", "at most 4096 characters")
