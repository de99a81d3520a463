"""Schedules: a workflow template started on a cron expression or at an interval, each tick exactly once."""

from ._model import Catchup, Overlap, Schedule, tick_request_id
from ._scheduler import Scheduler

__all__ = ["Catchup", "Overlap", "Schedule", "Scheduler", "tick_request_id"]
