"""Coordination: agents (registered, remote, built in), their selection and coordinated runs."""

from ._engine import CoordinationEngine
from ._model import (
    AgentInfo,
    AgentResult,
    Coordination,
    CoordinationCondition,
    CoordinationRequest,
    Selection,
    TaskError,
    check_condition,
    evaluate,
)
from ._queue import AgingQueue

__all__ = [
    "AgentInfo",
    "AgentResult",
    "AgingQueue",
    "Coordination",
    "CoordinationCondition",
    "CoordinationEngine",
    "CoordinationRequest",
    "Selection",
    "TaskError",
    "check_condition",
    "evaluate",
]
