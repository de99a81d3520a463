"""Workflows: templates, executions and the engine that runs them (including the complete workflow)."""

from ._budget import enforce as enforce_budget
from ._complete import Options as CompleteOptions
from ._engine import TERMINAL_EVENTS, WorkflowEngine
from ._executions import Execution, StepExecution
from ._steps import item_order, parse_json_output
from .templates import (
    AgentTaskSpec,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    ParameterSpec,
    RetryPolicy,
    StepSpec,
    Template,
)

__all__ = [
    "enforce_budget",
    "TERMINAL_EVENTS",
    "AgentTaskSpec",
    "CompleteOptions",
    "ConditionSpec",
    "CoordinationSpec",
    "Execution",
    "FanOutSpec",
    "ParameterSpec",
    "RetryPolicy",
    "StepExecution",
    "StepSpec",
    "Template",
    "WorkflowEngine",
    "item_order",
    "parse_json_output",
]
