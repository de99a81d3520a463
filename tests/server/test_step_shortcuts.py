"""Shortcuts on a workflow step's path (bench/README.md, "Cutting a step's CPU, fourth pass"): each gives
what the plain code gave. Selection ranks as the formula says, the shared empty usage adds up as a new
one would, and a latch behaves as the threading.Event it stands for."""

from __future__ import annotations

import random
import threading
from dataclasses import fields
from typing import Any

import pytest
from engines import WAIT, Engines
from polling import until
from voltorch_server.agents.base import (
    NO_USAGE,
    AgentError,
    AgentOutput,
    AgentTask,
    CancelSignal,
    Latch,
    TokenUsage,
)
from voltorch_server.components.coordination import (
    AgentState,
    AgentView,
    Candidate,
    CoordinationRequest,
    TaskError,
    rank,
)
from voltorch_server.components.workflows import AgentTaskSpec, StepExecution, StepSpec, Template


def _reference_rank(views: list[AgentView], required: tuple[str, ...], exclude: frozenset[str]) -> list:
    """The ranking spelled out: every check in order, the latency score against the fastest eligible."""

    def why(a: AgentView) -> str:
        missing = [c for c in required if c not in a.capabilities]
        if missing:
            return "missing capability: " + ", ".join(missing)
        if a.id in exclude:
            return "already takes part in this coordination"
        if a.status == "offline":
            return "offline"
        if a.status == "elsewhere":
            return "connected to another replica, and an agent here can take the task"
        if a.status == "error":
            return "in error state after repeated failures"
        if a.load >= a.max_concurrency:
            return f"at max concurrency ({a.max_concurrency})"
        return ""

    reasons = [why(a) for a in views]
    lats = [
        max(a.avg_latency, 0.001) for a, r in zip(views, reasons, strict=True) if not r and a.avg_latency > 0
    ]
    fastest = min(lats, default=0.001)
    out = []
    for a, r in zip(views, reasons, strict=True):
        lat_score = 1.0 if a.avg_latency <= 0 else fastest / max(a.avg_latency, 0.001)
        free = max(0.0, 1.0 - a.load / max(1, a.max_concurrency))
        score = round(0.5 * a.success_rate + 0.2 * lat_score + 0.3 * free, 4)  # the documented weights
        c = Candidate(
            a.id, score, a.success_rate, a.avg_latency, a.load, a.max_concurrency, not r, r or "eligible"
        )
        out.append(((bool(r), -score, a.last_dispatch, a.id), c, a))
    out.sort(key=lambda t: t[0])
    return [(c, a) for _, c, a in out]


def test_rank_is_the_formula_for_any_agents() -> None:
    rnd = random.Random(7)
    caps = ["a", "b", "c"]

    def view(i: int) -> AgentView:
        return AgentView(
            id=f"ag{i}",
            capabilities=frozenset(rnd.sample(caps, rnd.randint(0, 3))),
            status=rnd.choice(["idle", "busy", "offline", "error", "elsewhere"]),
            load=rnd.randint(0, 3),
            max_concurrency=rnd.randint(1, 3),
            success_rate=rnd.choice([1.0, 0.5, rnd.random()]),
            avg_latency=rnd.choice([0.0, 0.0005, rnd.random()]),
            last_dispatch=float(rnd.randint(0, 5)),
        )

    kept = [view(i) for i in range(6)]  # views an agent keeps from one dispatch to the next (ranked again)
    for _ in range(300):
        views = rnd.sample(kept, rnd.randint(0, 6)) + [view(i) for i in range(6, 6 + rnd.randint(0, 3))]
        rnd.shuffle(views)
        required = tuple(rnd.sample(caps, rnd.randint(0, 2)))
        exclude = frozenset(rnd.sample([v.id for v in views], min(len(views), rnd.randint(0, 2))))
        got, want = rank(views, required, exclude), _reference_rank(views, required, exclude)
        assert got == want
        assert [list(vars(c).items()) for c, _ in got] == [list(vars(c).items()) for c, _ in want]


def test_the_shared_empty_usage_adds_and_reads_back_as_a_new_one() -> None:
    used = TokenUsage(3, 4, 7, 0.25, 1)
    assert TokenUsage() == NO_USAGE and used + NO_USAGE == used == NO_USAGE + used
    assert sum([NO_USAGE, used, NO_USAGE], NO_USAGE) == used
    assert TokenUsage.from_dict(None) is NO_USAGE and TokenUsage.from_dict(NO_USAGE.to_dict()) is NO_USAGE
    assert TokenUsage.from_dict(used.to_dict()) == used
    negative_zero = TokenUsage.from_dict({"cost": -0.0})  # kept as it was given, not made the shared one
    assert negative_zero == NO_USAGE and str(negative_zero.cost) == "-0.0"
    with pytest.raises(AttributeError):
        NO_USAGE.cost = 1.0  # type: ignore[misc]  # frozen: sharing it is safe


def test_a_latch_wakes_its_waiters_once_set_as_an_event_does() -> None:
    latch = Latch()
    assert not latch.is_set() and latch.wait(0.01) is False
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(latch.wait(10))) for _ in range(3)]
    for t in waiters:
        t.start()
    until(lambda: latch._event is not None)  # a waiter made the event: the others wait on it too
    latch.set()
    for t in waiters:
        t.join(10)
    assert woken == [True, True, True] and latch.is_set() and latch.wait(0) is True
    signal = CancelSignal()
    heard: list[str] = []
    signal.add_callback(heard.append)
    signal.set("stop")
    signal.set("again")
    assert signal.is_set() and signal.wait(0) and signal.reason == "stop" and heard == ["stop"]


def test_a_read_steps_fields_are_what_was_checkpointed_in_the_constructors_objects(engines: Engines) -> None:
    """GetExecution's steps are read without the frozen dataclass's __init__ and without decoding the
    columns that are NULL: the objects the constructor makes, every field as written."""
    used = TokenUsage(5, 6, 11, 0.125, 1)

    def answer(task: AgentTask, cancel: CancelSignal) -> AgentOutput:
        return AgentOutput("out", {"k": [1, "é"]}, used)

    def refuse(task: AgentTask, cancel: CancelSignal) -> str:
        raise AgentError("no", code="NOPE")

    engines.coordination.register_agent("answers", kind="function", capabilities=("a",), runtime=answer)
    engines.coordination.register_agent("refuses", kind="function", capabilities=("r",), runtime=refuse)
    engines.workflows.register_template(
        Template(
            name="two",
            steps=(
                StepSpec("s0", AgentTaskSpec("x", capabilities=("a",))),
                StepSpec("s1", AgentTaskSpec("y", capabilities=("r",)), depends_on=("s0",)),
            ),
        )
    )
    e, _ = engines.workflows.start_execution("two")
    s0, s1 = engines.finished(e.id).steps
    assert (s0.status, s0.output, s0.structured_output, s0.usage, s0.error) == (
        "completed",
        "out",
        {"k": [1, "é"]},
        used,
        None,
    )
    assert s1.status == "failed" and s1.error is not None and s1.error.code == "NOPE" and s1.usage is NO_USAGE
    for made in (s0, s1):
        rebuilt = StepExecution(**{f.name: getattr(made, f.name) for f in fields(made)})
        assert rebuilt == made and list(vars(rebuilt).items()) == list(vars(made).items())


def test_a_finished_coordination_and_its_results_are_the_constructors_objects(engines: Engines) -> None:
    def refuse(task: AgentTask, cancel: CancelSignal) -> str:
        raise AgentError("no", code="NOPE")

    engines.coordination.register_agent("refuses", kind="function", capabilities=("r",), runtime=refuse)
    done = engines.coordination.wait(
        engines.coordination.request(CoordinationRequest(task="t", required_capabilities=("upper",))).id, WAIT
    )
    failed = engines.coordination.wait(
        engines.coordination.request(CoordinationRequest(task="t", required_capabilities=("r",))).id, WAIT
    )
    assert done.status == "completed" and failed.status == "failed" and failed.results[0].error is not None
    for made in (done, failed, done.results[0], failed.results[0]):
        rebuilt = type(made)(**{f.name: getattr(made, f.name) for f in fields(made)})
        assert rebuilt == made and list(vars(rebuilt).items()) == list(vars(made).items())


def test_an_agents_view_is_kept_only_while_what_it_shows_is_unchanged() -> None:
    """A dispatch views every agent: the last view is given again while nothing it is made of changed,
    and any change (load, an outcome, a dispatch, an error state, the window refreshed) gives a new one
    equal to a view made from scratch."""
    from voltorch_server.agents.base import FunctionAgent

    a = AgentState("a", "a", "function", ("x",), 2, None, {}, 0.0, runtime=FunctionAgent(lambda t, c: "ok"))

    def fresh(now: float) -> AgentView:
        return AgentView(
            a.id,
            frozenset(a.capabilities),
            a.status(now),
            a.load,
            a.max_concurrency,
            a.success_rate,
            a.avg_latency,
            a.last_dispatch,
        )

    first = a.view(1.0)
    assert a.view(2.0) is first and first == fresh(2.0)
    changes = [
        lambda: setattr(a, "load", 1),
        lambda: a.record(True, 0.25, None),
        lambda: setattr(a, "last_dispatch", 7),
        lambda: until(lambda: a.record(False, 0.1, TaskError("E", "e")) or a.status(3.0) == "error"),
        lambda: a.refresh(AgentState("a", "a", "function", ("x",), 2, None, {}, 0.0)),
        lambda: setattr(a, "capabilities", ("x", "y")),
    ]
    for change in changes:
        before = a.view(3.0)
        change()
        after = a.view(3.0)
        assert after is not before and after == fresh(3.0)
        assert a.view(3.0) is after


def test_a_steps_coordination_request_is_the_constructors_object(engines: Engines) -> None:
    """The request a step makes for its coordination is built without the frozen dataclass's __init__: the
    object the constructor makes (seen on its way to the engine's prepare)."""
    coordination = engines.coordination
    seen: list[CoordinationRequest] = []
    prepare = coordination.prepare

    def spy(req: CoordinationRequest) -> Any:
        seen.append(req)
        return prepare(req)

    coordination.prepare = spy  # the instance's attribute, on the real engine
    engines.workflows.register_template(
        Template(name="one", steps=(StepSpec("s", AgentTaskSpec("x", capabilities=("upper",))),))
    )
    e, _ = engines.workflows.start_execution("one")
    assert engines.finished(e.id).status == "completed"
    [made] = seen
    rebuilt = CoordinationRequest(**{f.name: getattr(made, f.name) for f in fields(made)})
    assert rebuilt == made and list(vars(rebuilt).items()) == list(vars(made).items())
    assert made.required_capabilities == ("upper",) and made.execution_id == e.id and made.step_id == "s"


def test_a_selections_stored_text_is_its_json(engines: Engines, db) -> None:
    """A selection's JSON is made of its candidates' kept texts: the text stored for the coordination is
    the standard encoder's for the selection, run after run (the same candidates again)."""
    import json

    for i in range(3):
        engines.coordination.register_agent(
            f"idle{i}", kind="function", capabilities=("other",), runtime=lambda t, c: ""
        )
    for _ in range(3):
        c = engines.coordination.wait(
            engines.coordination.request(CoordinationRequest(task="t", required_capabilities=("upper",))).id,
            WAIT,
        )
        assert c.selection is not None and len(c.selection.candidates) == 4
        [row] = db.query("SELECT selection FROM coordinations WHERE id = ?", (c.id,))
        expected = json.dumps(
            c.selection.to_dict(), separators=(",", ":"), allow_nan=False, ensure_ascii=False
        )
        assert row[0] == expected


def test_a_new_coordinations_live_record_has_every_field_in_order(engines: Engines) -> None:
    """A coordination's live record (the engine's Run) is made without its dataclass __init__: every field
    is there, in the class's order, with the defaults the constructor gives."""
    release = threading.Event()

    def hold(task: AgentTask, cancel: CancelSignal) -> str:
        release.wait(WAIT)
        return "done"

    coordination = engines.coordination
    coordination.register_agent("holds", kind="function", capabilities=("hold",), runtime=hold)
    c = coordination.request(CoordinationRequest(task="t", required_capabilities=("hold",)))
    try:
        run = coordination.runs.live[c.id]
        names = [f.name for f in fields(run)]
        assert list(vars(run)) == names
        defaults = {f.name: f.default for f in fields(run) if f.default is not f.default_factory}
        untouched = ("output", "structured_output", "error", "end_time", "final", "unwritten")
        for name in untouched:
            assert getattr(run, name) == defaults[name], name
        assert run.results == {} and not run.done.is_set()
    finally:
        release.set()
    assert coordination.wait(c.id, WAIT).output == "done"


def test_rank_step_after_step_as_agents_gain_lose_and_change_capabilities() -> None:
    """The agents lacking what a task asks for are ranked once and their entries kept while their views
    are the same objects: a capability gained or lost, an agent gone or new, a changed fastest eligible
    agent (which scores one with a latency) each ranks them again, as the formula says."""
    rnd = random.Random(11)

    def view(i: int, caps: frozenset[str], latency: float = 0.0, load: int = 0) -> AgentView:
        return AgentView(f"ag{i}", caps, "idle", load, 4, 1.0, latency, float(i))

    need = frozenset({"bench"})
    views = [view(0, need)] + [view(i, frozenset({f"c{i}"}), latency=0.5 * (i % 2)) for i in range(1, 8)]
    for step in range(200):
        i = rnd.randrange(len(views))
        change = rnd.choice(["none", "none", "gain", "lose", "latency", "gone", "new"])
        v = views[i]
        if change == "gain":
            views[i] = view(int(v.id[2:]), v.capabilities | need, v.avg_latency, v.load)
        elif change == "lose":
            views[i] = view(int(v.id[2:]), v.capabilities - need, v.avg_latency, v.load)
        elif change == "latency":  # the fastest eligible agent, when it is this one, changes with it
            views[i] = view(int(v.id[2:]), v.capabilities, rnd.choice([0.0, 0.01, 0.2]), rnd.randint(0, 4))
        elif change == "gone" and len(views) > 1:
            views.pop(i)
        elif change == "new":
            views.append(view(100 + step, frozenset(rnd.sample(["bench", "x", "y"], rnd.randint(0, 2)))))
        for required in (("bench",), ("bench", "x")):
            got, want = rank(views, required), _reference_rank(views, required, frozenset())
            assert got == want
            assert [list(vars(c).items()) for c, _ in got] == [list(vars(c).items()) for c, _ in want]
            assert all(a is b for (_, a), (_, b) in zip(got, want, strict=True))
