"""Workflow templates: the model, its validation, its step graph, placeholders and the template store."""

from ._check import MAX_STEP_TIMEOUT, SIGNAL_RE, Problems, check_retry, validate_template
from ._dag import Graph, find_cycle
from ._dag import build as build_graph
from ._model import (
    DEFAULT_APPROVAL_SIGNAL,
    DEFAULT_STEP_TIMEOUT,
    INTEGER,
    STRING,
    WAITS,
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
    apply_parameters,
    dumps,
    loads,
)
from ._placeholders import Scope, StepView, parse_ref, render, render_value
from ._store import TemplateStore

__all__ = [
    "DEFAULT_APPROVAL_SIGNAL",
    "DEFAULT_STEP_TIMEOUT",
    "INTEGER",
    "MAX_STEP_TIMEOUT",
    "SIGNAL_RE",
    "STRING",
    "WAITS",
    "AgentTaskSpec",
    "ApprovalSpec",
    "ConditionSpec",
    "CoordinationSpec",
    "FanOutSpec",
    "Graph",
    "ParameterSpec",
    "Problems",
    "RetryPolicy",
    "Scope",
    "SleepSpec",
    "StepSpec",
    "StepView",
    "Template",
    "TemplateStore",
    "WaitSpec",
    "apply_parameters",
    "build_graph",
    "check_retry",
    "dumps",
    "find_cycle",
    "loads",
    "parse_ref",
    "render",
    "render_value",
    "validate_template",
]
