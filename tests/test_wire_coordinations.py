"""voltorch.wire's agent and coordination mapping: the SDK's types survive a round trip; the server's read
models are written by the same functions, as they are (its condition and LLM settings included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp
from voltorch import wire
from voltorch.v1 import common_pb2
from voltorch.v1 import coordination_pb2 as pb
from voltorch_server.agents.base import TokenUsage, ToolSpec
from voltorch_server.agents.llm import LlmSettings
from voltorch_server.components.coordination import (
    AgentInfo,
    AgentResult,
    Coordination,
    CoordinationCondition,
    Selection,
    TaskError,
)
from voltorch_server.priority import Priority
from voltorch_server.servicers.coordination import agent_pb, coordination_pb

T = 1764589908  # whole seconds; the fractions below are exact in binary
ERROR = TaskError("AGENT_FAILED", "boom", True)
PB_ERROR = pb.TaskError(code="AGENT_FAILED", message="boom", retryable=True)
CANDIDATE_KEYS = (
    "agent_id",
    "score",
    "success_rate",
    "avg_latency",
    "current_load",
    "max_concurrency",
    "eligible",
    "reason",
)


def _value(obj: Any) -> Value:
    return ParseDict(obj, Value())


def _struct(obj: dict[str, Any]) -> Struct:
    s = Struct()
    s.update(obj)
    return s


def _result(i: int) -> AgentResult:
    return AgentResult(
        agent_id=f"a{i}",
        position=i,
        task_id=f"t{i}",
        attempts=i,
        output=f"o{i}",
        structured_output={"v": i} if i % 2 else None,
        error=ERROR if i == 2 else None,
        latency=0.25 * i,
        usage=TokenUsage(1, 2, 3, 0.5, 1),
        skipped=i == 3,
        condition_result=(i % 2 == 0) if i else None,
        start_time=T + i + 0.125 if i else None,
        end_time=T + i + 0.375 if i else None,
    )


def _expected_result(i: int) -> pb.AgentResult:
    m = pb.AgentResult(
        agent_id=f"a{i}",
        position=i,
        task_id=f"t{i}",
        attempts=i,
        output=f"o{i}",
        error=PB_ERROR if i == 2 else None,
        latency=Duration(nanos=250_000_000 * i % 1_000_000_000, seconds=i // 4),
        usage=pb.TokenUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3, cost=0.5, llm_calls=1),
        skipped=i == 3,
    )
    if i % 2:
        m.structured_output.CopyFrom(_value({"v": i}))
    if i:
        m.condition_result = i % 2 == 0
        m.start_time.CopyFrom(Timestamp(seconds=T + i, nanos=125_000_000))
        m.end_time.CopyFrom(Timestamp(seconds=T + i, nanos=375_000_000))
    return m


def _server_coordination() -> Coordination:
    candidates = [("a1", 0.5, 0.75, 0.5, 1, 4, True, "best"), ("a3", 0.25, 0.125, 2.0, 4, 4, False, "full")]
    selection = Selection.from_dict(
        {
            "selected_agent_ids": ["a1", "a2"],
            "candidates": [dict(zip(CANDIDATE_KEYS, c, strict=True)) for c in candidates],
            "explanation": "why",
        }
    )
    return Coordination(
        id="c1",
        status="completed",
        mode="conditional",
        task="do",
        request_id="r",
        source_agent_id="s",
        target_agent_id="t",
        agent_ids=("a1", "a2"),
        required_capabilities=("x",),
        context={"k": [1, "2"]},
        priority=Priority.CRITICAL,
        timeout=12.5,
        condition=CoordinationCondition(regex="a.*", negate=True),
        correlation_id="corr",
        trace_id="tr",
        results=tuple(_result(i) for i in range(4)),
        output="out",
        structured_output={"a": 1},
        error=ERROR,
        selection=selection,
        queue_position=2,
        create_time=T + 0.0625,
        start_time=T + 1.5,
        end_time=T + 2.75,
        execution_id="e",  # the server's own: not on the wire
        step_id="s",
    )


def _expected_coordination() -> pb.Coordination:
    return pb.Coordination(
        id="c1",
        request_id="r",
        mode=pb.COORDINATION_MODE_CONDITIONAL,
        status=pb.COORDINATION_STATUS_COMPLETED,
        source_agent_id="s",
        target_agent_id="t",
        agent_ids=["a1", "a2"],
        required_capabilities=["x"],
        task="do",
        context=_struct({"k": [1, "2"]}),
        priority=common_pb2.PRIORITY_CRITICAL,
        timeout=Duration(seconds=12, nanos=500_000_000),
        condition=pb.CoordinationCondition(regex="a.*", negate=True),
        correlation_id="corr",
        trace_id="tr",
        results=[_expected_result(i) for i in range(4)],
        output="out",
        structured_output=_value({"a": 1}),
        error=PB_ERROR,
        selection=pb.AgentSelection(
            selected_agent_ids=["a1", "a2"],
            candidates=[
                pb.SelectionCandidate(
                    agent_id="a1",
                    score=0.5,
                    success_rate=0.75,
                    avg_latency=Duration(nanos=500_000_000),
                    current_load=1,
                    max_concurrency=4,
                    eligible=True,
                    reason="best",
                ),
                pb.SelectionCandidate(
                    agent_id="a3",
                    score=0.25,
                    success_rate=0.125,
                    avg_latency=Duration(seconds=2),
                    current_load=4,
                    max_concurrency=4,
                    eligible=False,
                    reason="full",
                ),
            ],
            explanation="why",
        ),
        queue_position=2,
        create_time=Timestamp(seconds=T, nanos=62_500_000),
        start_time=Timestamp(seconds=T + 1, nanos=500_000_000),
        end_time=Timestamp(seconds=T + 2, nanos=750_000_000),
    )


def _server_agent() -> AgentInfo:
    llm = LlmSettings(
        model="m",
        base_url="http://llm",
        api_key_env="KEY",
        system_prompt="sp",
        temperature=0.5,
        timeout=3.0,
        max_tokens=9,
        tools=("t1",),
        max_tool_iterations=2,
    )
    return AgentInfo(
        "a1", "A", "llm", ("c1", "c2"), 4, "busy", 2, 0.75, 0.25, 0.5, 10, 1, llm, {"l": "v"}, T + 0.5, T + 5.0,
        ERROR, (ToolSpec("f", "desc", {"type": "object"}), ToolSpec("g")),
    )  # fmt: skip


def _expected_agent() -> pb.Agent:
    return pb.Agent(
        id="a1",
        name="A",
        kind=pb.AGENT_KIND_LLM,
        capabilities=["c1", "c2"],
        max_concurrency=4,
        status=pb.AGENT_STATUS_BUSY,
        current_load=2,
        success_rate=0.75,
        error_rate=0.25,
        avg_latency=Duration(nanos=500_000_000),
        tasks_completed=10,
        tasks_failed=1,
        llm=pb.LlmSettings(
            model="m",
            base_url="http://llm",
            api_key_env="KEY",
            system_prompt="sp",
            temperature=0.5,
            timeout=Duration(seconds=3),
            max_tokens=9,
            tools=["t1"],
            max_tool_iterations=2,
        ),
        labels={"l": "v"},
        register_time=Timestamp(seconds=T, nanos=500_000_000),
        last_seen_time=Timestamp(seconds=T + 5),
        last_error=PB_ERROR,
        tools=[
            pb.ToolSpec(name="f", description="desc", parameters=_struct({"type": "object"})),
            pb.ToolSpec(name="g"),
        ],
    )


def _same_bytes(a: Any, b: Any) -> bool:
    return bool(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True))


def test_the_server_writes_a_rich_coordination_as_before() -> None:
    got = coordination_pb(_server_coordination())
    assert got == _expected_coordination() and _same_bytes(got, _expected_coordination())


def test_each_kind_of_condition_is_written_under_the_wire_names() -> None:
    plain = Coordination(id="c", status="queued", mode="conditional", task="t", create_time=T)
    assert not coordination_pb(plain).HasField("condition")
    cases = [
        (CoordinationCondition(contains="yes"), pb.CoordinationCondition(contains="yes")),
        (
            CoordinationCondition(json_path="a.b", json_value={"x": 1}, negate=True),
            pb.CoordinationCondition(
                json_field_equals=pb.JsonFieldEquals(path="a.b", value=_value({"x": 1})), negate=True
            ),
        ),
    ]
    for condition, expected in cases:
        c = Coordination(
            id="c", status="queued", mode="conditional", task="t", create_time=T, condition=condition
        )
        assert coordination_pb(c).condition == expected


def test_the_server_writes_an_agent_as_before() -> None:
    got = agent_pb(_server_agent())
    assert got == _expected_agent() and _same_bytes(got, _expected_agent())
    offline = AgentInfo("a2", "B", "offline", (), 1, "idle", 0, 0.0, 0.0, 0.0, 0, 0, None, {}, T, None, None)
    m = agent_pb(offline)
    assert [f for f in ("llm", "last_seen_time", "last_error") if m.HasField(f)] == [] and not m.tools


def test_the_sdk_types_survive_a_round_trip() -> None:
    c = wire.coordination_from_pb(coordination_pb(_server_coordination()))
    assert c.condition == wire.Condition(regex_pattern="a.*", negate=True)
    assert (
        c.results[2].error == wire.TaskError("AGENT_FAILED", "boom", True) and c.results[0].start_time is None
    )
    assert c.selection is not None and c.selection.candidates[1].avg_latency == 2.0
    assert c.create_time == datetime.fromtimestamp(T + 0.0625, UTC) and c.timeout == 12.5
    assert wire.coordination_from_pb(wire.coordination_pb(c, c.condition)) == c
    for r in c.results:
        assert wire.agent_result_from_pb(wire.agent_result_pb(r)) == r
    written = wire.selection_pb(c.selection)
    assert written is not None and wire.selection_from_pb(written) == c.selection

    a = wire.agent_from_pb(agent_pb(_server_agent()))
    assert a.llm is not None and a.llm.max_tokens == 9 and a.tools[0].parameters == {"type": "object"}
    assert wire.agent_from_pb(wire.agent_pb(a)) == a

    unset = wire.Coordination(id="c", status="running", mode="parallel", task="t")
    assert wire.coordination_from_pb(wire.coordination_pb(unset, None)) == unset
