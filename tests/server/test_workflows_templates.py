"""Templates: registration, versions, listing, and every kind of bad template or parameter answered with
INVALID_ARGUMENT naming the field. Plus the pure helpers (placeholders, graph, backoff, JSON output)."""

from __future__ import annotations

import math

import pytest
import voltorch
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
from voltorch.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from voltorch_server.components.workflows import item_order, parse_json_output
from voltorch_server.components.workflows.templates import RetryPolicy as ServerRetry
from voltorch_server.components.workflows.templates import (
    Scope,
    StepSpec,
    StepView,
    build_graph,
    find_cycle,
    parse_ref,
    render,
    render_value,
)


def simple(name: str = "t", **kw) -> WorkflowTemplate:
    return WorkflowTemplate(name=name, steps=[Step("a", AgentTask("do it", ["echo"]))], **kw)


def bad(client: voltorch.Client, template: WorkflowTemplate) -> list[str]:
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.register_template(template)
    return err.value.fields


# -- registration and versions ------------------------------------------------------------------------


def test_versions_identical_registration_and_lookup(client):
    v1 = client.workflows.register_template(simple("ver", description="first", category="dev"))
    assert v1.version == 1 and not v1.builtin and v1.create_time is not None
    assert client.workflows.register_template(simple("ver", description="first", category="dev")).version == 1
    v2 = client.workflows.register_template(simple("ver", description="second", category="dev"))
    assert v2.version == 2
    assert client.workflows.get_template("ver").description == "second"
    assert client.workflows.get_template("ver", 1).description == "first"
    with pytest.raises(AlreadyExistsError):
        client.workflows.register_template(simple("ver", description="third", version=2))
    assert client.workflows.register_template(simple("ver", description="third", version=3)).version == 3
    with pytest.raises(NotFoundError):
        client.workflows.get_template("ver", 9)
    with pytest.raises(NotFoundError):
        client.workflows.get_template("nope")


def test_round_trip_of_every_step_kind(client):
    t = WorkflowTemplate(
        name="kinds",
        description="all kinds",
        category="dev",
        parameters=[
            ParameterSpec("n", "integer", default=2, min=1, max=5, description="count"),
            ParameterSpec("mode", enum=["a", "b"], default="a"),
            ParameterSpec("code", pattern=r"[A-Z]{3}", required=True),
        ],
        default_retry=RetryPolicy(
            max_attempts=4,
            initial_backoff=0.5,
            backoff_multiplier=3,
            max_backoff=9,
            non_retryable_errors=["BAD"],
        ),
        timeout=120,
        labels={"team": "core"},
        steps=[
            Step("a", AgentTask("x {{n}}", ["echo"], context={"k": "{{code}}"}, json_output=True), timeout=5),
            Step(
                "b",
                CoordinationStep(
                    "c",
                    "conditional",
                    source_agent_id="s",
                    target_agent_id="t",
                    condition=Condition.regex("ok.*", negate=True),
                ),
                depends_on=["a"],
            ),
            Step("c", ConditionStep("a", Condition.field_equals("r[0].v", 1), ["d"], []), depends_on=["a"]),
            Step(
                "d",
                FanOut(
                    "a",
                    AgentTask("{{item}}", agent_id="w"),
                    items_path="list",
                    max_parallel=3,
                    max_items=9,
                    truncate_items=True,
                    item_dependencies=True,
                ),
                retry=RetryPolicy(max_attempts=1),
                allow_failure=True,
            ),
        ],
    )
    got = client.workflows.register_template(t)
    assert got.version == 1
    assert client.workflows.register_template(got).version == 1  # what came back is the same definition
    assert [s.id for s in got.steps] == ["a", "b", "c", "d"]
    assert got.steps[1].kind.condition == Condition.regex("ok.*", negate=True)
    assert got.steps[2].kind.predicate == Condition.field_equals("r[0].v", 1)
    assert got.steps[3].kind.task.agent_id == "w" and got.steps[3].kind.item_dependencies
    assert got.steps[0].timeout == 5 and got.steps[3].allow_failure
    assert [p.name for p in got.parameters] == ["n", "mode", "code"]
    assert got.parameters[0].default == 2 and got.parameters[2].required
    assert got.default_retry == RetryPolicy(4, 0.5, 3, 9, ("BAD",))
    assert (got.timeout, got.labels, got.category) == (120, {"team": "core"}, "dev")


def test_list_latest_or_all_versions_by_category_with_paging(client):
    for name, cat in (("l-a", "x"), ("l-b", "x"), ("l-c", "y")):
        client.workflows.register_template(simple(name, category=cat))
    client.workflows.register_template(simple("l-a", category="x", description="v2"))
    names = [(t.name, t.version) for t in client.workflows.list_templates(category="x", page_size=1)]
    assert names == [("l-a", 2), ("l-b", 1)]
    every = [(t.name, t.version) for t in client.workflows.list_templates(category="x", all_versions=True)]
    assert every == [("l-a", 1), ("l-a", 2), ("l-b", 1)]
    everything = {t.name: t for t in client.workflows.list_templates()}
    assert everything["complete-workflow"].builtin  # the built-in template is listed too
    assert "l-c" in everything


def test_built_in_template_cannot_be_replaced(client):
    assert "template.name" in bad(client, simple("complete-workflow"))


# -- bad templates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        (
            [
                Step("a", AgentTask("x", ["e"]), depends_on=["b"]),
                Step("b", AgentTask("y", ["e"]), depends_on=["a"]),
            ],
            "template.steps[0].depends_on",
            "cycle: a -> b -> a",
        ),
        (
            [Step("a", AgentTask("x", ["e"]), depends_on=["ghost"])],
            "template.steps[0].depends_on[0]",
            "unknown step",
        ),
        ([Step("a", AgentTask("x", ["e"]), depends_on=["a"])], "template.steps[0].depends_on[0]", "itself"),
        (
            [Step("a", AgentTask("x", ["e"])), Step("a", AgentTask("y", ["e"]))],
            "template.steps[1].id",
            "duplicate",
        ),
        ([Step("1bad", AgentTask("x", ["e"]))], "template.steps[0].id", "step id"),
        (
            [Step("a", AgentTask("x"))],
            "template.steps[0].agent_task",
            "exactly one of agent_id or capabilities",
        ),
        ([Step("a", AgentTask("x", ["e"], agent_id="z"))], "template.steps[0].agent_task", "exactly one"),
        ([Step("a", AgentTask("", ["e"]))], "template.steps[0].agent_task.task", "required"),
        (
            [Step("a", AgentTask("{{steps.b.output}}", ["e"])), Step("b", AgentTask("y", ["e"]))],
            "template.steps[0].agent_task.task",
            "dependencies",
        ),
        (
            [Step("a", AgentTask("{{steps.a.result.x}}", ["e"]))],
            "template.steps[0].agent_task.task",
            "dependencies",
        ),
        (
            [Step("a", AgentTask("{{nope}}", ["e"]))],
            "template.steps[0].agent_task.task",
            "undeclared parameter",
        ),
        ([Step("a", AgentTask("{{item}}", ["e"]))], "template.steps[0].agent_task.task", "fan_out"),
        (
            [Step("a", AgentTask("{{steps.x.bogus}}", ["e"]))],
            "template.steps[0].agent_task.task",
            "steps.<id>.output",
        ),
        (
            [Step("a", AgentTask("x", ["e"], context={"k": ["{{missing}}"]}))],
            "template.steps[0].agent_task.context",
            "undeclared",
        ),
        (
            [Step("a", FanOut("b", AgentTask("{{item}}", ["e"]))), Step("b", AgentTask("y", ["e"]))],
            "template.steps[0].fan_out.items_from_step_id",
            "dependencies",
        ),
        (
            [
                Step("a", AgentTask("x", ["e"])),
                Step("b", FanOut("a", AgentTask("{{item}}", ["e"]), items_path="a..b"), depends_on=["a"]),
            ],
            "template.steps[1].fan_out.items_path",
            "malformed",
        ),
        (
            [
                Step("a", AgentTask("x", ["e"])),
                Step("c", ConditionStep("a", Condition.regex("("), []), depends_on=["a"]),
            ],
            "template.steps[1].condition.predicate.regex",
            "compile",
        ),
        (
            [
                Step("a", AgentTask("x", ["e"])),
                Step("c", ConditionStep("a", Condition.contains("x"), ["zz"]), depends_on=["a"]),
            ],
            "template.steps[1].condition.then_steps[0]",
            "unknown step",
        ),
        (
            [
                Step("a", AgentTask("x", ["e"])),
                Step("c", ConditionStep("a", Condition.contains("x"), ["a"]), depends_on=["a"]),
            ],
            "template.steps[0].depends_on",
            "cycle",
        ),
        (
            [Step("c", ConditionStep("zz", Condition.contains("x")))],
            "template.steps[0].condition.source_step_id",
            "unknown",
        ),
        (
            [Step("a", CoordinationStep("x", "conditional", source_agent_id="s"))],
            "template.steps[0].coordination.condition",
            "predicate is required",
        ),
        (
            [Step("a", CoordinationStep("x", "pipeline", agent_ids=["one"]))],
            "template.steps[0].coordination.agent_ids",
            "two agents",
        ),
        ([Step("a", AgentTask("x", ["e"]), timeout=-1)], "template.steps[0].timeout", "negative"),
        ([Step("a", AgentTask("x", ["e"]), timeout=90_000)], "template.steps[0].timeout", "24 h"),
        (
            [Step("a", AgentTask("x", ["e"]), retry=RetryPolicy(backoff_multiplier=0.5))],
            "template.steps[0].retry.backoff_multiplier",
            ">= 1",
        ),
        (  # NaN passed the ">= 1" check; every backoff was then NaN
            [Step("a", AgentTask("x", ["e"]), retry=RetryPolicy(backoff_multiplier=math.nan))],
            "template.steps[0].retry.backoff_multiplier",
            "finite",
        ),
        (  # its next_retry_time was past year 9999: no client could read the execution
            [Step("a", AgentTask("x", ["e"]), retry=RetryPolicy(initial_backoff=10**11, max_backoff=10**11))],
            "template.steps[0].retry.initial_backoff",
            "a year",
        ),
        (  # stored, then every execution failed at the step
            [Step("a", AgentTask("x", ["e"], context={"n": math.inf}))],
            "template.steps[0].agent_task.context",
            "JSON",
        ),
        (
            [Step("a", AgentTask("x", ["e"]), retry=RetryPolicy(non_retryable_errors=["lower"]))],
            "template.steps[0].retry.non_retryable_errors[0]",
            "UPPER_SNAKE",
        ),
        ([], "template.steps", "1..500"),
    ],
)
def test_bad_templates_name_the_field(client, steps, field, words):
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.register_template(WorkflowTemplate(name="bad", steps=steps))
    assert field in err.value.fields, err.value
    assert words in str(err.value)
    with pytest.raises(NotFoundError):
        client.workflows.get_template("bad")  # nothing half-written


@pytest.mark.parametrize(
    ("param", "field"),
    [
        (ParameterSpec("x", required=True, default="d"), "template.parameters[0].default_value"),
        (ParameterSpec("x", "integer", default="one"), "template.parameters[0].default_value"),
        (ParameterSpec("x", "number", min=5, max=1), "template.parameters[0].max"),
        (ParameterSpec("x", pattern="("), "template.parameters[0].pattern"),
        (ParameterSpec("x", "integer", pattern="a"), "template.parameters[0].pattern"),
        (ParameterSpec("x", "boolean", min=1), "template.parameters[0].min"),
        (ParameterSpec("x", "integer", enum=["a"]), "template.parameters[0].enum_values[0]"),
        (ParameterSpec("9x"), "template.parameters[0].name"),
        (ParameterSpec("x", "string", default="abcdef", max=3), "template.parameters[0].default_value"),
        (ParameterSpec("x", "number", min=math.nan), "template.parameters[0].min"),
        (ParameterSpec("x", "number", max=math.inf), "template.parameters[0].max"),
        (ParameterSpec("x", "number", enum=[math.nan]), "template.parameters[0].enum_values[0]"),
        (ParameterSpec("x", "number", default=math.inf), "template.parameters[0].default_value"),
    ],
)
def test_bad_parameter_specs(client, param, field):
    assert field in bad(client, simple("p", parameters=[param]))


def test_many_problems_are_reported_together(client):
    fields = bad(
        client,
        WorkflowTemplate(
            name="Bad Name",
            parameters=[ParameterSpec("p", required=True, default=1)],
            steps=[Step("a", AgentTask("x", ["e"]), depends_on=["q"])],
        ),
    )
    expected = {"template.name", "template.parameters[0].default_value", "template.steps[0].depends_on[0]"}
    assert expected <= set(fields)


# -- bad starts ---------------------------------------------------------------------------------------


def test_parameters_are_validated_at_start(client):
    client.workflows.register_template(
        simple(
            "params",
            parameters=[
                ParameterSpec("name", required=True, min=2, max=5, pattern="[a-z]+"),
                ParameterSpec("n", "integer", min=1, max=10, default=1),
                ParameterSpec("ratio", "number", default=0.5),
                ParameterSpec("flag", "boolean", default=False),
                ParameterSpec("color", enum=["red", "blue"], default="red"),
                ParameterSpec("tags", "list", max=2, default=[]),
                ParameterSpec("meta", "object", default={}),
            ],
        )
    )
    cases = [
        ({}, "parameters.name", "missing"),
        ({"name": 5}, "parameters.name", "must be a string"),
        ({"name": "a"}, "parameters.name", "below the minimum 2"),
        ({"name": "abcdefg"}, "parameters.name", "above the maximum 5"),
        ({"name": "AB"}, "parameters.name", "pattern"),
        ({"name": "ok", "n": 2.5}, "parameters.n", "integer"),
        ({"name": "ok", "n": 11}, "parameters.n", "maximum 10"),
        ({"name": "ok", "ratio": "x"}, "parameters.ratio", "number"),
        ({"name": "ok", "flag": 1}, "parameters.flag", "boolean"),
        ({"name": "ok", "color": "green"}, "parameters.color", "one of"),
        ({"name": "ok", "tags": [1, 2, 3]}, "parameters.tags", "maximum 2"),
        ({"name": "ok", "meta": []}, "parameters.meta", "object"),
        ({"name": "ok", "ratio": math.nan}, "parameters.ratio", "finite"),
        ({"name": "ok", "tags": [math.inf]}, "parameters.tags", "finite"),
        ({"name": "ok", "zzz": 1}, "parameters.zzz", "unknown parameter"),
    ]
    for params, field, words in cases:
        with pytest.raises(InvalidArgumentError) as err:
            client.workflows.start("params", params)
        assert field in err.value.fields, (params, err.value)
        assert words in str(err.value), (params, err.value)
    assert list(client.workflows.list(template_name="params")) == []  # nothing was started
    with pytest.raises(NotFoundError):
        client.workflows.start("no-such-template")
    with pytest.raises(NotFoundError):
        client.workflows.start("params", {"name": "ok"}, version=7)


def test_complete_workflow_input_is_validated(client):
    for requirement, field in (("", "requirement"), ("   ", "requirement"), ("x" * 20_001, "requirement")):
        with pytest.raises(InvalidArgumentError) as err:
            client.workflows.execute_complete(requirement)
        assert err.value.fields == [field]
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.execute_complete("ok", max_tasks=-1)
    assert err.value.fields == ["options.max_tasks"]
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.execute_complete("ok", labels={"": "x"})
    assert err.value.fields == ["labels[]"]
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.execute_complete("ok", step_timeout=100_000)
    assert err.value.fields == ["options.step_timeout"]
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.execute_complete("ok", retry=RetryPolicy(backoff_multiplier=0.1))
    assert err.value.fields == ["options.retry.backoff_multiplier"]


def test_bad_list_and_get_arguments(client):
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.list_page(page_token="garbage")
    assert err.value.fields == ["page_token"]
    with pytest.raises(InvalidArgumentError):
        client.workflows.get("")
    with pytest.raises(NotFoundError):
        client.workflows.get("wfx_missing")
    with pytest.raises(NotFoundError):
        list(client.workflows.watch("wfx_missing", timeout=5))


# -- pure helpers -------------------------------------------------------------------------------------


def test_placeholders_render_params_steps_and_items():
    scope = Scope(
        params={"who": "ada", "obj": {"a": 1}},
        steps={"s": StepView("text out", {"tasks": [{"id": "t1"}, {"id": "t2"}]}, "")},
        item={"title": "T", "n": [5]},
        item_index=3,
    )
    assert render("{{who}} {{ params.who }} {{obj}}", scope) == 'ada ada {"a": 1}'
    assert (
        render("{{steps.s.output}}|{{steps.s.result.tasks[1].id}}|{{steps.s.result.nope}}", scope)
        == "text out|t2|"
    )
    assert render("{{item.title}}#{{item_index}} {{item.n[0]}}", scope) == "T#3 5"
    assert render_value({"x": "{{steps.s.result.tasks}}", "y": ["{{item_index}}"]}, scope) == {
        "x": [{"id": "t1"}, {"id": "t2"}],
        "y": [3],
    }
    for expr in ("steps.s", "steps.s.output.x", "1abc", "params."):
        with pytest.raises(ValueError):
            parse_ref(expr)


def test_graph_cycles_sinks_and_branch_edges():
    from voltorch_server.components.coordination import CoordinationCondition
    from voltorch_server.components.workflows.templates import AgentTaskSpec as A
    from voltorch_server.components.workflows.templates import ConditionSpec

    steps = (
        StepSpec("a", A("x", capabilities=("e",))),
        StepSpec(
            "c", ConditionSpec("a", CoordinationCondition(contains="y"), then_steps=("b",)), depends_on=("a",)
        ),
        StepSpec("b", A("x", capabilities=("e",))),
    )
    g = build_graph(steps)
    assert g.deps["b"] == ("c",) and g.branches["b"] == (("c", "then"),)
    assert g.sinks() == ["b"] and g.ancestors("b") == {"a", "c"}
    assert find_cycle(g) is None
    assert g.topological  # every step listed after the steps it waits for
    assert not build_graph((steps[0], steps[2], steps[1])).topological  # b before the condition c
    loop = (
        StepSpec("x", A("x", capabilities=("e",)), depends_on=("y",)),
        StepSpec("y", A("y", capabilities=("e",)), depends_on=("x",)),
    )
    assert find_cycle(build_graph(loop)) == ["x", "y", "x"]


def test_backoff_grows_exponentially_up_to_the_cap_and_inherits():
    p = ServerRetry(initial_backoff=1.0, backoff_multiplier=3.0, max_backoff=5.0)
    assert [p.delay(n) for n in (1, 2, 3)] == [1.0, 3.0, 5.0]
    assert ServerRetry().delay(1) == 1.0 and ServerRetry().attempts == 3
    step = ServerRetry(max_attempts=7, non_retryable_errors=("A",))
    merged = step.over(ServerRetry(max_attempts=2, initial_backoff=0.1, non_retryable_errors=("B",)))
    assert (merged.attempts, merged.initial_backoff, merged.non_retryable_errors) == (7, 0.1, ("A", "B"))


def test_agent_json_output_is_parsed_leniently():
    assert parse_json_output('{"a": 1}') == (True, {"a": 1})
    assert parse_json_output('Sure!\n```json\n{"a": [1]}\n```\nDone.') == (True, {"a": [1]})
    assert parse_json_output('Here you go: {"tasks": []} hope it helps') == (True, {"tasks": []})
    assert parse_json_output("no json here") == (False, None)
    assert parse_json_output("") == (False, None)


def test_item_dependency_order_detects_cycles():
    order, _ = item_order([{"id": "a", "depends_on": ["b"]}, {"id": "b"}, "plain"])
    assert order == {0: [1], 1: [], 2: []}
    order, why = item_order([{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}])
    assert order is None and "cycle" in why
