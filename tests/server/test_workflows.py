"""Workflow executions end to end through the SDK: DAG order and parallelism, every step kind, retries,
timeouts, optional steps, cancel/pause/resume, idempotent start, queueing and many workflows at once.

Agents are in-process function agents on the real coordination engine, so each test controls exactly
when a step finishes (events and barriers, never sleeps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import voltorch
from polling import until
from voltorch import (
    AgentTask,
    Condition,
    ConditionStep,
    CoordinationStep,
    FanOut,
    ParameterSpec,
    RetryPolicy,
    Step,
    WorkflowTemplate,
)
from voltorch.errors import AlreadyExistsError, FailedPreconditionError, NotFoundError
from voltorch_server.agents.base import AgentError, CancelSignal
from voltorch_server.agents.base import AgentTask as ServerTask
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

WAIT = 20.0  # generous bound for anything a test waits on


def add_agent(server: VoltorchServer, agent_id: str, caps: tuple[str, ...], fn: Callable, n: int = 8) -> None:
    server.runtime.coordination.register_agent(
        agent_id, kind="function", capabilities=caps, runtime=fn, max_concurrency=n
    )


def echo(task: ServerTask, cancel: CancelSignal) -> dict[str, Any]:
    return {"text": task.text, "step": task.step_id}


def run(
    client: voltorch.Client, template: WorkflowTemplate, params: dict | None = None
) -> voltorch.Execution:
    client.workflows.register_template(template)
    started = client.workflows.start(template.name, params)
    return client.workflows.wait(started.execution.id, timeout=WAIT)


def events_of(client: voltorch.Client, execution_id: str) -> list[voltorch.WorkflowEvent]:
    return list(client.workflows.watch(execution_id, timeout=WAIT))


def wait_for_event(
    client: voltorch.Client, execution_id: str, predicate: Callable[[voltorch.WorkflowEvent], bool]
) -> voltorch.WorkflowEvent:
    for ev in client.workflows.watch(execution_id, timeout=WAIT):
        if predicate(ev):
            return ev
    raise AssertionError("the execution ended before the awaited event")


def step_started(step_id: str) -> Callable[[voltorch.WorkflowEvent], bool]:
    return lambda ev: ev.type == "workflow.step.started" and ev.step_id == step_id


def step_completed(step_id: str) -> Callable[[voltorch.WorkflowEvent], bool]:
    return lambda ev: ev.type == "workflow.step.completed" and ev.step_id == step_id


class Gate:
    """An agent that blocks until released (or cancelled) and records what it saw."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.cancelled = threading.Event()
        self.calls: list[str] = []

    def __call__(self, task: ServerTask, cancel: CancelSignal) -> dict[str, Any]:
        self.calls.append(task.step_id)
        self.entered.set()
        while not self.release.wait(0.05):  # bounded: watches release and cancel together
            if cancel.is_set():
                self.cancelled.set()
                raise AgentError("cancelled", code="CANCELLED")
        return {"released": task.step_id}


@pytest.fixture
def agents(server: VoltorchServer) -> VoltorchServer:
    add_agent(server, "echo", ("echo",), echo)
    add_agent(server, "echo-2", ("echo",), echo)
    return server


# -- DAG ------------------------------------------------------------------------------------------------


def test_dag_runs_in_dependency_order_with_independent_steps_in_parallel(client, agents):
    order: list[str] = []
    lock = threading.Lock()
    both_running = threading.Barrier(2, timeout=WAIT)

    def agent(task: ServerTask, cancel: CancelSignal) -> dict[str, Any]:
        with lock:
            order.append(task.step_id)
        if task.step_id in ("b", "c"):
            both_running.wait()  # passes only if b and c run at the same time
        return {"n": len(task.step_id), "step": task.step_id}

    add_agent(agents, "dag", ("dag",), agent)
    t = WorkflowTemplate(
        name="dag",
        parameters=[ParameterSpec("who", required=True)],
        steps=[
            Step(
                "d",
                AgentTask("join {{steps.b.output}} | {{steps.c.result.n}} for {{who}}", ["dag"]),
                depends_on=["b", "c"],
            ),
            Step("b", AgentTask("b after {{steps.a.result.step}}", ["dag"]), depends_on=["a"]),
            Step("c", AgentTask("c", ["dag"]), depends_on=["a"]),
            Step("a", AgentTask("a for {{params.who}}", ["dag"])),
        ],
    )
    e = run(client, t, {"who": "ada"})
    assert e.status == "completed", e.error
    assert order[0] == "a" and order[-1] == "d" and set(order[1:3]) == {"b", "c"}
    assert [s.step_id for s in e.steps] == ["d", "b", "c", "a"]  # template order
    assert all(s.status == "completed" and s.attempts == 1 for s in e.steps)
    d = e.step("d")
    assert d.structured_output["step"] == "d"
    assert e.result == d.structured_output  # the one sink's structured output
    assert e.parameters == {"who": "ada"}


def test_outputs_of_earlier_steps_reach_later_ones(client, agents):
    seen: dict[str, ServerTask] = {}

    def agent(task: ServerTask, cancel: CancelSignal) -> Any:
        seen[task.step_id] = task
        return {"items": [1, 2], "name": "first"} if task.step_id == "a" else "done"

    add_agent(agents, "ctx", ("ctx",), agent)
    t = WorkflowTemplate(
        name="flow",
        parameters=[ParameterSpec("n", "integer", default=3), ParameterSpec("tags", "list", default=["x"])],
        steps=[
            Step("a", AgentTask("make", ["ctx"])),
            Step(
                "b",
                AgentTask(
                    "name={{steps.a.result.name}} second={{steps.a.result.items[1]}} n={{n}} tags={{tags}}",
                    ["ctx"],
                    context={"whole": "{{steps.a.result}}", "mixed": "n is {{n}}", "n": "{{n}}"},
                ),
                depends_on=["a"],
            ),
        ],
    )
    e = run(client, t)
    assert e.status == "completed"
    b = seen["b"]
    assert b.text == 'name=first second=2 n=3 tags=["x"]'
    assert b.context["whole"] == {"items": [1, 2], "name": "first"}  # a lone placeholder keeps its type
    assert b.context["mixed"] == "n is 3" and b.context["n"] == 3
    assert e.step("b").output == "done"
    # The one server runs it, at the first epoch of its lease (a cluster's takeovers grow it).
    assert (e.replica_id, e.epoch) == (agents.runtime.replica_id, 1)


# -- step kinds ----------------------------------------------------------------------------------------


def test_agent_task_by_agent_id(client, agents):
    t = WorkflowTemplate(name="by-id", steps=[Step("a", AgentTask("hi", agent_id="echo-2"))])
    e = run(client, t)
    assert e.status == "completed"
    assert e.step("a").agent_id == "echo-2"
    assert e.step("a").coordination_id


@pytest.mark.parametrize(
    ("mode", "kw", "check"),
    [
        (
            "sequential",
            {"source_agent_id": "echo", "target_agent_id": "echo-2"},
            lambda s: s.agent_id == "echo-2",
        ),
        ("parallel", {"agent_ids": ["echo", "echo-2"]}, lambda s: len(s.structured_output) == 2),
        ("pipeline", {"agent_ids": ["echo", "echo-2", "up"]}, lambda s: s.agent_id == "up"),
        (
            "conditional",
            {
                "source_agent_id": "echo",
                "target_agent_id": "up",
                "condition": Condition.contains("coordinate"),
            },
            lambda s: s.agent_id == "up",
        ),
    ],
)
def test_coordination_step_in_every_mode(client, agents, mode, kw, check):
    add_agent(agents, "up", ("upper",), lambda task, cancel: task.text.upper())
    t = WorkflowTemplate(
        name=f"coord-{mode}",
        steps=[Step("c", CoordinationStep("coordinate {{x}}", mode, **kw))],
        parameters=[ParameterSpec("x", default="this")],
    )
    e = run(client, t)
    assert e.status == "completed", e.error
    step = e.step("c")
    assert step.coordination_id and check(step), step


def test_condition_step_takes_one_branch_and_skips_the_other(client, agents):
    add_agent(agents, "judge", ("judge",), lambda task, cancel: {"approved": True, "score": 0.9})
    t = WorkflowTemplate(
        name="branch",
        steps=[
            Step("review", AgentTask("review", ["judge"])),
            Step(
                "ok",
                ConditionStep("review", Condition.field_equals("approved", True), ["ship"], ["fix"]),
                depends_on=["review"],
            ),
            Step("ship", AgentTask("ship", ["echo"])),
            Step("fix", AgentTask("fix", ["echo"])),
            Step("after_fix", AgentTask("after fix", ["echo"]), depends_on=["fix"]),
            Step("report", AgentTask("report {{steps.ok.output}}", ["echo"]), depends_on=["ship", "fix"]),
        ],
    )
    e = run(client, t)
    assert e.status == "completed"
    status = {s.step_id: s.status for s in e.steps}
    assert status == {
        "review": "completed",
        "ok": "completed",
        "ship": "completed",
        "fix": "skipped",
        "after_fix": "skipped",  # every dependency skipped
        "report": "completed",  # one dependency ran
    }
    assert e.step("ok").structured_output is True
    assert e.step("report").structured_output["text"] == "report true"
    types = [ev.type for ev in events_of(client, e.id)]
    assert types.count("workflow.step.skipped") == 2


def test_fan_out_runs_each_item_with_a_parallelism_cap(client, agents):
    active = 0
    peak = 0
    lock = threading.Lock()
    three_in = threading.Barrier(2, timeout=WAIT)

    def worker(task: ServerTask, cancel: CancelSignal) -> dict[str, Any]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            if task.context["item"]["name"] in ("a", "b"):
                three_in.wait()  # the first two run together
            return {"did": task.text}
        finally:
            with lock:
                active -= 1

    items = [{"name": n, "title": f"Item {n}"} for n in "abcde"]
    add_agent(agents, "lister", ("list",), lambda task, cancel: {"items": items})
    add_agent(agents, "worker", ("work",), worker)
    t = WorkflowTemplate(
        name="fan",
        steps=[
            Step("list", AgentTask("list", ["list"])),
            Step(
                "each",
                FanOut(
                    "list",
                    AgentTask("do {{item.name}} #{{item_index}}", ["work"], context={"item": "{{item}}"}),
                    items_path="items",
                    max_parallel=2,
                ),
                depends_on=["list"],
            ),
        ],
    )
    e = run(client, t)
    assert e.status == "completed", e.error
    each = e.step("each")
    assert [c.step_id for c in each.children] == [f"each[{i}]" for i in range(5)]
    assert [c.name for c in each.children] == [f"Item {n}" for n in "abcde"]
    assert each.structured_output == [{"did": f"do {n} #{i}"} for i, n in enumerate("abcde")]
    assert peak == 2


def test_fan_out_item_dependencies_order_elements_and_pass_their_outputs(client, agents):
    order: list[str] = []
    deps_seen: dict[str, Any] = {}

    def worker(task: ServerTask, cancel: CancelSignal) -> dict[str, Any]:
        tid = task.context["task"]["id"]
        order.append(tid)
        deps_seen[tid] = task.context.get("dependencies", {})
        return {"id": tid}

    tasks = [
        {"id": "t3", "depends_on": ["t1", "t2"]},
        {"id": "t1", "depends_on": []},
        {"id": "t2", "depends_on": ["t1", "unknown"]},
    ]
    add_agent(agents, "planner2", ("plan2",), lambda task, cancel: {"tasks": tasks})
    add_agent(agents, "doer", ("do",), worker)
    t = WorkflowTemplate(
        name="fan-deps",
        steps=[
            Step("plan", AgentTask("plan", ["plan2"])),
            Step(
                "run",
                FanOut(
                    "plan",
                    AgentTask("{{item.id}}", ["do"], context={"task": "{{item}}"}),
                    items_path="tasks",
                    item_dependencies=True,
                ),
                depends_on=["plan"],
            ),
        ],
    )
    e = run(client, t)
    assert e.status == "completed", e.error
    assert order == ["t1", "t2", "t3"]
    assert deps_seen["t3"] == {"t1": {"id": "t1"}, "t2": {"id": "t2"}}
    assert deps_seen["t1"] == {}


@pytest.mark.parametrize(
    ("produced", "fan_kw", "status", "code"),
    [
        ({"items": []}, {}, "completed", None),
        ({"items": "nope"}, {}, "failed", "INVALID_ITEMS"),
        ({"other": 1}, {}, "failed", "INVALID_ITEMS"),
        ({"items": [1, 2, 3]}, {"max_items": 2}, "failed", "TOO_MANY_ITEMS"),
        ({"items": [1, 2, 3]}, {"max_items": 2, "truncate_items": True}, "completed", None),
    ],
)
def test_fan_out_item_lists(client, agents, produced, fan_kw, status, code):
    add_agent(agents, "src", ("src",), lambda task, cancel: produced)
    t = WorkflowTemplate(
        name="fan-items",
        steps=[
            Step("src", AgentTask("x", ["src"])),
            Step(
                "each",
                FanOut("src", AgentTask("{{item}}", ["echo"]), items_path="items", **fan_kw),
                depends_on=["src"],
            ),
        ],
    )
    e = run(client, t)
    assert e.status == status
    each = e.step("each")
    if code:
        assert each.error is not None
        assert each.status == "failed" and each.error.code == code
        assert e.error is not None
        assert e.error.code == code
    else:
        assert each.structured_output == [
            {"text": str(i), "step": f"each[{j}]"} for j, i in enumerate(produced["items"][:2])
        ]


# -- retries and timeouts --------------------------------------------------------------------------------


def test_retry_with_exponential_backoff_then_success(client, agents):
    starts: list[float] = []

    def flaky(task: ServerTask, cancel: CancelSignal) -> str:
        starts.append(time.monotonic())
        if len(starts) < 4:
            raise AgentError("try again", retryable=True, code="FLAKY")
        return "finally"

    add_agent(agents, "flaky", ("flaky",), flaky)
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.05, backoff_multiplier=2.0, max_backoff=0.15)
    t = WorkflowTemplate(name="retry", steps=[Step("a", AgentTask("x", ["flaky"]), retry=policy)])
    e = run(client, t)
    assert e.status == "completed"
    a = e.step("a")
    assert a.attempts == 4 and a.output == "finally" and a.error is None
    retrying = [ev for ev in events_of(client, e.id) if ev.type == "workflow.step.retrying"]
    assert [ev.data["delay"] for ev in retrying] == [0.05, 0.1, 0.15]  # doubled, then capped
    assert [ev.data["error"]["code"] for ev in retrying] == ["FLAKY"] * 3
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g >= d * 0.9 for g, d in zip(gaps, (0.05, 0.1, 0.15), strict=True)), gaps


@pytest.mark.parametrize(
    ("error", "policy", "attempts"),
    [
        (
            AgentError("bad input", retryable=False, code="BAD"),
            RetryPolicy(max_attempts=5, initial_backoff=0.01),
            1,
        ),
        (
            AgentError("nope", retryable=True, code="QUOTA"),
            RetryPolicy(max_attempts=5, initial_backoff=0.01, non_retryable_errors=["QUOTA"]),
            1,
        ),
        (
            AgentError("flaky", retryable=True, code="FLAKY"),
            RetryPolicy(max_attempts=3, initial_backoff=0.01),
            3,
        ),
    ],
)
def test_failed_step_fails_the_workflow_after_its_retries(client, agents, error, policy, attempts):
    calls: list[int] = []
    gate = Gate()

    def failing(task: ServerTask, cancel: CancelSignal) -> str:
        calls.append(1)
        gate.entered.wait(WAIT)  # fail only once the independent step is running
        raise error

    add_agent(agents, "failing", ("fail",), failing)
    add_agent(agents, "slow", ("slow",), gate)
    t = WorkflowTemplate(
        name="fails",
        steps=[
            Step("a", AgentTask("x", ["fail"]), retry=policy),
            Step("side", AgentTask("y", ["slow"])),
            Step("after", AgentTask("z", ["echo"]), depends_on=["a"]),
        ],
    )
    client.workflows.register_template(t)
    started = client.workflows.start("fails")
    assert gate.entered.wait(WAIT)
    e = client.workflows.wait(started.execution.id, timeout=WAIT)
    assert e.status == "failed"  # never reported completed
    assert e.error.code == error.code
    assert len(calls) == attempts == e.step("a").attempts
    assert e.step("a").status == "failed"
    assert e.step("side").status == "cancelled"  # running sibling cancelled...
    assert gate.cancelled.wait(WAIT)  # ...down to its agent task
    assert e.step("after").status == "cancelled"
    types = [ev.type for ev in events_of(client, e.id)]
    assert types[-1] == "workflow.execution.failed" and "workflow.execution.completed" not in types


def test_step_timeout_fails_each_attempt_with_timeout(client, agents):
    gate = Gate()  # never released: every attempt runs into the step timeout
    add_agent(agents, "stuck", ("stuck",), gate)
    t = WorkflowTemplate(
        name="step-timeout",
        steps=[
            Step(
                "a",
                AgentTask("x", ["stuck"]),
                timeout=0.3,
                retry=RetryPolicy(max_attempts=2, initial_backoff=0.01),
            )
        ],
    )
    e = run(client, t)
    assert e.status == "failed"
    a = e.step("a")
    assert a.error is not None
    assert a.attempts == 2 and a.error.code == "TIMEOUT"
    assert gate.cancelled.wait(WAIT)


def test_workflow_timeout_ends_in_timed_out(client, agents):
    gate = Gate()
    add_agent(agents, "stuck", ("stuck",), gate)
    t = WorkflowTemplate(name="wf-timeout", timeout=0.4, steps=[Step("a", AgentTask("x", ["stuck"]))])
    e = run(client, t)
    assert e.status == "timed_out"
    assert e.error is not None
    assert e.error.code == "TIMEOUT"
    assert e.step("a").status == "cancelled"
    assert gate.cancelled.wait(WAIT)
    assert events_of(client, e.id)[-1].type == "workflow.execution.timed_out"


def test_optional_step_failure_lets_dependents_run(client, agents):
    def broken(task: ServerTask, cancel: CancelSignal) -> str:
        raise AgentError("kaput", code="KAPUT")

    add_agent(agents, "broken", ("broken",), broken)
    t = WorkflowTemplate(
        name="optional",
        steps=[
            Step("a", AgentTask("x", ["broken"]), allow_failure=True, retry=RetryPolicy(max_attempts=1)),
            Step("b", AgentTask("a said: {{steps.a.error}}", ["echo"]), depends_on=["a"]),
        ],
    )
    e = run(client, t)
    assert e.status == "completed"
    step_a = e.step("a")
    assert step_a.status == "failed" and step_a.error is not None and step_a.error.code == "KAPUT"
    assert e.step("b").structured_output["text"] == "a said: kaput"


# -- control ------------------------------------------------------------------------------------------


def test_cancel_stops_running_steps_and_their_agents(client, agents):
    gate = Gate()
    add_agent(agents, "gate", ("gate",), gate)
    t = WorkflowTemplate(
        name="cancel",
        steps=[Step("a", AgentTask("x", ["gate"])), Step("b", AgentTask("y", ["echo"]), depends_on=["a"])],
    )
    client.workflows.register_template(t)
    eid = client.workflows.start("cancel").execution.id
    assert gate.entered.wait(WAIT)
    e = client.workflows.cancel(eid, "changed my mind")
    assert e.status == "cancelled"
    assert e.error.code == "CANCELLED" and "changed my mind" in e.error.message
    assert [s.status for s in e.steps] == ["cancelled", "cancelled"]
    assert gate.cancelled.wait(WAIT)
    assert client.workflows.cancel(eid).status == "cancelled"  # again: unchanged
    last = events_of(client, eid)[-1]
    assert last.type == "workflow.execution.cancelled" and last.data["reason"] == "changed my mind"
    done = run(client, WorkflowTemplate(name="done", steps=[Step("a", AgentTask("x", ["echo"]))]))
    with pytest.raises(FailedPreconditionError):
        client.workflows.cancel(done.id)
    with pytest.raises(FailedPreconditionError):
        client.workflows.pause(done.id)
    with pytest.raises(NotFoundError):
        client.workflows.cancel("wfx_nope")


def test_a_reason_is_kept_to_its_first_1024_characters(client, agents):
    """A pause's, a cancel's or a restart's reason goes into an event, a row and the console: an over-long
    one (100,000 characters) is kept to its first 1,024, as a coordination's cancel keeps it."""
    gate = Gate()
    add_agent(agents, "gate", ("gate",), gate)
    client.workflows.register_template(
        WorkflowTemplate(name="why", steps=[Step("a", AgentTask("x", ["gate"]))])
    )
    eid = client.workflows.start("why").execution.id
    assert gate.entered.wait(WAIT)
    long = "why" * 33_334
    client.workflows.pause(eid, long)
    cancelled = client.workflows.cancel(eid, long)
    assert cancelled.status == "cancelled" and long[:1024] in cancelled.error.message
    reasons = [e.data["reason"] for e in events_of(client, eid) if "reason" in e.data]
    assert reasons and all(r == long[:1024] for r in reasons)
    restarted = client.orchestrator.restart_component("events", long)
    assert restarted.name == "events"
    last = list(client.events.list(types=["component.restarted"]))[-1]
    assert last.data["reason"] == long[:1024]


def test_pause_keeps_running_results_and_resume_never_reruns_them(client, agents):
    gate = Gate()
    add_agent(agents, "gate", ("gate",), gate)
    calls: list[str] = []

    def counted(task: ServerTask, cancel: CancelSignal) -> str:
        calls.append(task.step_id)
        return task.step_id

    add_agent(agents, "counted", ("counted",), counted)
    t = WorkflowTemplate(
        name="pause",
        steps=[
            Step("first", AgentTask("x", ["counted"])),
            Step("a", AgentTask("x", ["gate"]), depends_on=["first"]),
            Step("b", AgentTask("y", ["counted"]), depends_on=["a"]),
        ],
    )
    client.workflows.register_template(t)
    eid = client.workflows.start("pause").execution.id
    assert gate.entered.wait(WAIT)
    paused = client.workflows.pause(eid, "lunch")
    assert paused.status == "paused"
    assert client.workflows.pause(eid).status == "paused"  # no-op
    gate.release.set()  # the running step finishes while paused; its result is kept
    wait_for_event(client, eid, step_completed("a"))
    e = client.workflows.get(eid)
    assert e.status == "paused"
    assert e.step("a").status == "completed" and e.step("b").status == "pending"
    resumed = client.workflows.resume(eid)
    assert resumed.status in ("running", "completed")
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed"
    assert calls == ["first", "b"] and gate.calls == ["a"]  # nothing ran twice
    types = [ev.type for ev in events_of(client, eid) if ev.type.startswith("workflow.execution")]
    assert types == [
        "workflow.execution.started",
        "workflow.execution.paused",
        "workflow.execution.resumed",
        "workflow.execution.completed",
    ]
    with pytest.raises(FailedPreconditionError):
        client.workflows.resume(eid)


def test_start_is_idempotent_by_request_id(client, agents):
    t = WorkflowTemplate(
        name="idem",
        parameters=[ParameterSpec("x", default=1, type="integer")],
        steps=[Step("a", AgentTask("{{x}}", ["echo"]))],
    )
    client.workflows.register_template(t)
    first = client.workflows.start("idem", {"x": 2}, request_id="req-1")
    again = client.workflows.start("idem", {"x": 2}, request_id="req-1")
    assert not first.existing and again.existing
    assert again.execution.id == first.execution.id
    with pytest.raises(AlreadyExistsError) as err:
        client.workflows.start("idem", {"x": 3}, request_id="req-1")
    assert err.value.metadata["execution_id"] == first.execution.id
    assert client.workflows.wait(first.execution.id, timeout=WAIT).status == "completed"
    assert len([e for e in client.workflows.list(template_name="idem")]) == 1


def test_watch_replays_history_then_follows_and_resumes_from_a_sequence(client, agents):
    e = run(client, WorkflowTemplate(name="watch", steps=[Step("a", AgentTask("x", ["echo"]))]))
    evs = events_of(client, e.id)
    types = [ev.type for ev in evs]
    assert types[0] == "workflow.execution.started" and types[-1] == "workflow.execution.completed"
    assert {"workflow.step.started", "workflow.step.completed", "coordination.completed"} <= set(types)
    assert all(ev.event.correlation_id == e.id for ev in evs)
    seqs = [ev.event.sequence for ev in evs]
    assert seqs == sorted(seqs)
    tail = list(client.workflows.watch(e.id, from_sequence=seqs[-2], include_execution=True, timeout=WAIT))
    assert [ev.event.sequence for ev in tail] == seqs[-2:]
    assert tail[-1].execution.status == "completed"


def test_list_filters_and_pages(client, agents):
    t1 = WorkflowTemplate(name="list-a", steps=[Step("a", AgentTask("x", ["echo"]))])
    t2 = WorkflowTemplate(name="list-b", steps=[Step("a", AgentTask("x", ["echo"]))])
    ids = [run(client, t1).id for _ in range(3)] + [run(client, t2).id]
    listed = list(client.workflows.list(template_name="list-a", page_size=2))
    assert [x.id for x in listed] == list(reversed(ids[:3]))  # newest first, across pages
    assert listed[0].steps == []
    assert [x.id for x in client.workflows.list(status="completed", template_name="list-b")] == [ids[3]]
    first = client.workflows.get(ids[1])
    after = list(client.workflows.list(created_after=first.create_time, template_name="list-a"))
    assert [x.id for x in after] == [ids[2], ids[1]]
    with_steps = client.workflows.list_page(template_name="list-b", include_steps=True)[0]
    assert with_steps[0].steps[0].status == "completed"
    assert list(client.workflows.list(status="failed")) == []


# -- concurrency --------------------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[VoltorchServer]:
    cfg = Config(
        host="127.0.0.1", port=0, db=str(tmp_path / "limited.db"), shutdown_grace=1.0, workflow_concurrency=2
    )
    srv = VoltorchServer(cfg).start()
    yield srv
    srv.stop(grace=1.0)


def test_concurrency_limit_queues_extra_workflows_never_rejects(limited):
    gate = Gate()
    add_agent(limited, "gate", ("gate",), gate)
    with voltorch.Client(limited.target, timeout=10) as client:
        client.workflows.register_template(
            WorkflowTemplate(name="q", steps=[Step("a", AgentTask("x", ["gate"]))])
        )
        low = client.workflows.start("q", priority="low").execution
        starts = [client.workflows.start("q").execution for _ in range(3)]
        high = client.workflows.start("q", priority="high").execution
        statuses = [low.status, *(s.status for s in starts), high.status]
        assert statuses == ["running", "running", "queued", "queued", "queued"]
        assert limited.runtime.workflows.details()["queued_workflows"] == 3
        gate.release.set()
        done = [client.workflows.wait(x.id, timeout=WAIT) for x in (low, *starts, high)]
        assert [d.status for d in done] == ["completed"] * 5
        # the HIGH one was admitted before the NORMAL ones that were queued earlier
        assert done[2].start_time and done[3].start_time and done[4].start_time
        assert done[4].start_time <= min(done[2].start_time, done[3].start_time)


def test_a_hundred_concurrent_workflows_complete(client, agents):
    t = WorkflowTemplate(
        name="many",
        parameters=[ParameterSpec("i", "integer", required=True)],
        steps=[
            Step("a", AgentTask("a{{i}}", ["echo"])),
            Step("b", AgentTask("b{{steps.a.result.text}}", ["echo"]), depends_on=["a"]),
            Step("c", AgentTask("c{{i}}", ["echo"]), depends_on=["a"]),
        ],
    )
    client.workflows.register_template(t)
    ids = [client.workflows.start("many", {"i": i}).execution.id for i in range(100)]
    done = [client.workflows.wait(i, timeout=60) for i in ids]
    assert all(d.status == "completed" for d in done)
    assert [d.step("b").structured_output["text"] for d in done[:3]] == ["ba0", "ba1", "ba2"]
    assert len(list(client.workflows.list(template_name="many", status="completed"))) == 100


def test_watch_shows_only_its_execution_when_a_correlation_id_is_shared(client, agents):
    client.workflows.register_template(
        WorkflowTemplate(name="shared", steps=[Step("a", AgentTask("x", ["echo"]))])
    )
    one = client.workflows.start("shared", correlation_id="order-42").execution
    two = client.workflows.start("shared", correlation_id="order-42").execution
    assert one.correlation_id == two.correlation_id == "order-42"
    for e in (one, two):
        evs = list(client.workflows.watch(e.id, timeout=WAIT))
        ids = {ev.data.get("execution_id") for ev in evs if ev.type.startswith("workflow.")}
        assert ids == {e.id} and evs[-1].type == "workflow.execution.completed"


# -- tracing and recorded errors -------------------------------------------------------------------


def test_one_trace_from_the_caller_through_workflow_steps_to_agents(client, agents, spans):
    from opentelemetry import trace

    def broken(task: ServerTask, cancel: CancelSignal) -> str:
        raise AgentError("no luck", code="NO_LUCK")

    add_agent(agents, "broken", ("broken",), broken)
    t = WorkflowTemplate(
        name="traced",
        steps=[Step("a", AgentTask("x", ["echo"])), Step("b", AgentTask("y", ["broken"]), depends_on=["a"])],
        default_retry=RetryPolicy(max_attempts=1),
    )
    client.workflows.register_template(t)
    with trace.get_tracer("tests").start_as_current_span("caller") as root:
        eid = client.workflows.start("traced").execution.id
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "failed"
    tid = format(root.get_span_context().trace_id, "032x")
    assert e.trace_id == tid

    def in_trace() -> list[Any]:
        return [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == tid]

    def both_steps_ended() -> list[Any] | None:
        found = in_trace()
        return found if sum(s.name == "workflow.step" for s in found) == 2 else None

    # A step's span ends once its attempt is recorded, which may be just after the execution's end is seen.
    finished = until(both_steps_ended, why=lambda: sorted(s.name for s in in_trace()))
    by_name: dict[str, list[Any]] = {}
    for s in finished:
        by_name.setdefault(s.name, []).append(s)
    (execute,) = by_name["workflow.execute"]
    steps = by_name["workflow.step"]
    assert sorted(s.attributes["voltorch.step_id"] for s in steps) == ["a", "b"]
    assert all(s.parent.span_id == execute.context.span_id for s in steps)
    step_ids = {s.context.span_id for s in steps}
    assert any(
        s.parent is not None and s.parent.span_id in step_ids for s in finished if s.name != "workflow.step"
    )
    evs = [ev for ev in events_of(client, eid) if ev.type.startswith("workflow.")]
    assert {ev.event.trace_id for ev in evs} == {tid}
    (err,) = client.errors(correlation_id=eid, code="WORKFLOW_FAILED")
    assert err.trace_id == tid and "NO_LUCK" not in err.message and "no luck" in err.message


@pytest.mark.parametrize("fallback", [True, False])
def test_capability_from_an_item_falls_back_to_any_agent(client, agents, fallback):
    items = [{"cap": "echo"}, {"cap": "nobody-has-this"}, {"cap": "not a valid name!"}]
    add_agent(agents, "items", ("items",), lambda task, cancel: {"items": items})
    t = WorkflowTemplate(
        name=f"fallback-{str(fallback).lower()}",
        default_retry=RetryPolicy(max_attempts=1),
        steps=[
            Step("src", AgentTask("x", ["items"])),
            Step(
                "each",
                FanOut(
                    "src",
                    AgentTask("{{item.cap}}", ["{{item.cap}}"], fallback_to_any_agent=fallback),
                    "items",
                ),
                depends_on=["src"],
            ),
        ],
    )
    e = run(client, t)
    children = e.step("each").children
    if fallback:
        assert e.status == "completed"
        assert children[0].agent_id in ("echo", "echo-2") and all(c.agent_id for c in children)
    else:
        assert e.status == "failed"
        assert {c.error.code for c in children if c.error} <= {"NO_CAPABLE_AGENT", "INVALID_TASK"}
        assert e.error is not None
        assert e.error.code in ("NO_CAPABLE_AGENT", "INVALID_TASK")


def test_queued_executions_can_be_paused_resumed_and_cancelled(limited):
    gate = Gate()
    add_agent(limited, "gate", ("gate",), gate)
    with voltorch.Client(limited.target, timeout=10) as client:
        client.workflows.register_template(
            WorkflowTemplate(name="q2", steps=[Step("a", AgentTask("x", ["gate"]))])
        )
        running = [client.workflows.start("q2").execution for _ in range(2)]
        paused, cancelled = (client.workflows.start("q2").execution for _ in range(2))
        assert paused.status == cancelled.status == "queued"
        assert client.workflows.pause(paused.id).status == "paused"
        assert client.workflows.cancel(cancelled.id).status == "cancelled"
        gate.release.set()
        assert [client.workflows.wait(r.id, timeout=WAIT).status for r in running] == ["completed"] * 2
        assert client.workflows.get(paused.id).status == "paused"  # not admitted while paused
        client.workflows.resume(paused.id)
        e = client.workflows.wait(paused.id, timeout=WAIT)
        assert e.status == "completed" and e.step("a").attempts == 1
        assert client.workflows.get(cancelled.id).step("a").status == "cancelled"
        assert len(gate.calls) == 3
