"""The coordination's objects built without their dataclass __init__ (a workflow step makes ~16) are the
objects the constructors make: equal, with the same fields, so nothing downstream can tell."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from voltorch_server.agents.base import AgentTask
from voltorch_server.components.coordination._dispatch import _task_with
from voltorch_server.components.coordination._model import Candidate
from voltorch_server.components.coordination._selection import AgentView, _candidate, choose, rank, view_of
from voltorch_server.components.coordination._tools import EngineToolbox
from voltorch_server.priority import Priority


def _same(a: object, b: object) -> None:
    assert type(a) is type(b) and a == b
    assert vars(a) == vars(b) and list(vars(a)) == list(vars(b))  # every field, in the constructor's order


def test_views_and_candidates_are_the_constructors_objects() -> None:
    args = ("a1", frozenset({"x", "y"}), "idle", 2, 8, 0.75, 0.125, 3.0)
    _same(view_of(*args), AgentView(*args))
    cargs = ("a1", 0.5, 0.9, 0.01, 1, 4, True, "eligible")
    _same(_candidate(*cargs), Candidate(*cargs))
    assert {f.name for f in fields(AgentView)} == set(vars(view_of(*args)))
    assert {f.name for f in fields(Candidate)} == set(vars(_candidate(*cargs)))


def test_the_selected_candidate_is_the_best_one_relabelled() -> None:
    views = [
        view_of("slow", frozenset({"x"}), "idle", 0, 4, 1.0, 0.5, 1.0),
        view_of("fast", frozenset({"x"}), "idle", 0, 4, 1.0, 0.1, 2.0),
        view_of("other", frozenset({"y"}), "idle", 0, 4, 1.0, 0.0, 0.0),
    ]
    ranked = rank(views, ("x",))
    best, selection = choose(ranked, ("x",))
    assert best is not None and best.id == "fast"
    _same(selection.candidates[0], replace(ranked[0][0], reason="selected: best score"))
    assert [c.agent_id for c in selection.candidates] == ["fast", "slow", "other"]


def test_a_task_with_its_callbacks_is_what_replace_makes() -> None:
    task = AgentTask(
        task_id="c:0",
        coordination_id="c",
        text="do it",
        context={"k": [1]},
        capabilities=("x",),
        attempt=2,
        deadline=12.5,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        correlation_id="corr",
        priority=Priority.HIGH,
        execution_id="wfx",
        step_id="s",
        agent_id="a1",
        agent_capabilities=("x", "z"),
    )
    seen: list[str] = []
    changes: dict[str, Any] = {
        "on_delta": seen.append,
        "on_last_delta": seen.append,
        "toolbox": EngineToolbox(engine=None),  # type: ignore[arg-type]  # never called here
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
    }
    made = _task_with(task, **changes)
    _same(made, replace(task, **changes))
    assert all(getattr(made, k) is v for k, v in changes.items())
    assert task.on_delta is None  # the original is untouched
