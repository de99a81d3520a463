"""Coordination: agents (registered, remote, built in), their selection and coordinated runs."""

from ..shared import AgingQueue
from ._agents import AgentState
from ._deltas import DELTA_EVENT, DeltaStream
from ._engine import CoordinationEngine
from ._journal import Moved
from ._model import (
    MAX_AGENT_IDS,
    MODES,
    TERMINAL,
    AgentInfo,
    AgentKind,
    AgentResult,
    AgentStatus,
    Candidate,
    Coordination,
    CoordinationCondition,
    CoordinationMode,
    CoordinationRequest,
    CoordinationStatus,
    Selection,
    TaskError,
    check_condition,
    evaluate,
)
from ._runs import InlineTask, Placed, Prepared
from ._selection import AgentView, rank
from ._store_port import CoordinationPort

__all__ = [
    "DELTA_EVENT",
    "MAX_AGENT_IDS",
    "MODES",
    "TERMINAL",
    "AgentKind",
    "AgentStatus",
    "CoordinationMode",
    "CoordinationStatus",
    "DeltaStream",
    "AgentInfo",
    "AgentResult",
    "AgentState",
    "AgentView",
    "Candidate",
    "AgingQueue",
    "Coordination",
    "CoordinationCondition",
    "CoordinationEngine",
    "CoordinationPort",
    "CoordinationRequest",
    "InlineTask",
    "Moved",
    "Placed",
    "Prepared",
    "Selection",
    "TaskError",
    "check_condition",
    "evaluate",
    "rank",
]
