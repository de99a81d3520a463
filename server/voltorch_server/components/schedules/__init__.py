"""Schedules: a workflow template started on a cron expression or at an interval, each tick exactly once."""

from ._model import Catchup, Overlap, Schedule, tick_request_id
from ._scheduler import Scheduler
from ._store_port import SchedulesPort

__all__ = ["Catchup", "Overlap", "Schedule", "Scheduler", "SchedulesPort", "tick_request_id"]
