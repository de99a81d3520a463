"""Workflow templates: the model, its validation, its step graph, placeholders and the template store."""

from ._check import MAX_STEP_TIMEOUT, Problems, check_budget, check_retry, validate_template
from ._dag import Graph, find_cycle
from ._dag import build as build_graph
from ._model import (
    DEFAULT_STEP_TIMEOUT,
    INTEGER,
    STRING,
    AgentTaskSpec,
    Budget,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    ParameterSpec,
    RetryPolicy,
    StepSpec,
    Template,
    apply_parameters,
    dumps,
    loads,
)
from ._placeholders import Scope, StepView, parse_ref, render, render_value
from ._store import TemplateStore

__all__ = [
    "DEFAULT_STEP_TIMEOUT",
    "INTEGER",
    "MAX_STEP_TIMEOUT",
    "STRING",
    "AgentTaskSpec",
    "Budget",
    "ConditionSpec",
    "CoordinationSpec",
    "FanOutSpec",
    "Graph",
    "ParameterSpec",
    "Problems",
    "RetryPolicy",
    "Scope",
    "StepSpec",
    "StepView",
    "Template",
    "TemplateStore",
    "apply_parameters",
    "build_graph",
    "check_budget",
    "check_retry",
    "dumps",
    "find_cycle",
    "loads",
    "parse_ref",
    "render",
    "render_value",
    "validate_template",
]
