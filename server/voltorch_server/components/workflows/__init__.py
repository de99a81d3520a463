"""Workflows: templates, executions and the engine that runs them (including the complete workflow)."""

from ._budget import enforce as enforce_budget
from ._complete import Options as CompleteOptions
from ._engine import TERMINAL_EVENTS, WorkflowEngine
from ._executions import Execution, ExecutionStore, StepExecution, StepRecord
from ._ownership import Fenced, Ownership, fair_share
from ._signals import Signal, SignalStore
from ._steps import item_order, parse_json_output
from ._timer_store import TimerRow, TimerStore
from ._waits import WaitingFor
from .templates import (
    AgentTaskSpec,
    ApprovalSpec,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    ParameterSpec,
    RetryPolicy,
    SleepSpec,
    StepSpec,
    Template,
    WaitSpec,
)

__all__ = [
    "Fenced",
    "Ownership",
    "fair_share",
    "enforce_budget",
    "TERMINAL_EVENTS",
    "AgentTaskSpec",
    "ApprovalSpec",
    "CompleteOptions",
    "ConditionSpec",
    "CoordinationSpec",
    "Execution",
    "ExecutionStore",
    "FanOutSpec",
    "ParameterSpec",
    "RetryPolicy",
    "Signal",
    "SignalStore",
    "TimerRow",
    "TimerStore",
    "SleepSpec",
    "StepExecution",
    "StepRecord",
    "StepSpec",
    "Template",
    "WaitSpec",
    "WaitingFor",
    "WorkflowEngine",
    "item_order",
    "parse_json_output",
]
