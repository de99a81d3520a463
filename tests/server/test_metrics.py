"""Metrics: values that move when work happens, the helpers components call, history in SQLite, Prometheus."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import replace
from typing import Any

import pytest
import voltorch
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from voltorch import SleepStep, Step, WorkflowTemplate
from voltorch.v1 import workflows_pb2
from voltorch_server import telemetry
from voltorch_server.agents.base import TokenUsage
from voltorch_server.app import VoltorchServer
from voltorch_server.components.system import MetricCollector, Sample
from voltorch_server.config import Config
from voltorch_server.metrics import SCOPE, Metrics, _views, series_key


def test_rpc_and_event_metrics_move_with_work(client: voltorch.Client) -> None:
    before = client.metrics(["rpc.server.duration", "voltorch.events.published"])
    for i in range(3):
        client.state.set(f"m/{i}", i)
    with pytest.raises(voltorch.NotFoundError):
        client.state.get("m/missing")
    after = client.metrics(["rpc.server.duration", "voltorch.events.published", "process.*"])
    ok_sets = {"rpc.method": "SetKey", "rpc.grpc.status_code": "0"}
    assert after.value("rpc.server.duration", ok_sets) - before.value("rpc.server.duration", ok_sets) == 3
    assert after.value("rpc.server.duration", {"rpc.method": "GetKey", "rpc.grpc.status_code": "5"}) == 1
    (sets,) = after.select("rpc.server.duration", ok_sets)
    assert sets.kind == "histogram" and sets.unit == "ms"
    h = sets.histogram
    assert h is not None and h.count == sets.value and 0 < h.min <= h.p50 <= h.p99 <= h.max
    published = {"event.domain": "state"}
    assert (
        after.value("voltorch.events.published", published)
        - before.value("voltorch.events.published", published)
        == 3
    )
    assert after.value("process.memory.usage") > 0 and after.value("process.thread.count") > 0
    assert {m.name for m in after.metrics} >= {"process.cpu.utilization", "process.cpu.time"}


class EndedSpans(SpanProcessor):
    def __init__(self, name: str):
        self.name = name
        self.done = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == self.name:
            self.done.set()


def test_events_delivered_to_subscribers_are_counted(client: voltorch.Client) -> None:
    ended = EndedSpans("voltorch.v1.EventService/Subscribe")
    telemetry.add_span_processor(ended)
    try:
        sub = client.events.subscribe("count.*", from_sequence=1)
        for i in range(3):
            client.events.publish(f"count.e{i}")
        it = iter(sub)
        got = [getattr(next(it), "type", None) for _ in range(3)]
        sub.close()
        assert ended.done.wait(10)  # the server counted what it sent when the stream ended
    finally:
        telemetry.remove_span_processor(ended)
    assert got == ["count.e0", "count.e1", "count.e2"]
    m = client.metrics(["voltorch.events.delivered"])
    # Events, not messages: the SDK asks for batches, and heartbeats carry none.
    assert m.value("voltorch.events.delivered", {"rpc.method": "Subscribe"}) == 3


def test_events_a_run_execution_streams_are_counted_and_its_start_is_not(client: voltorch.Client) -> None:
    client.workflows.register_template(WorkflowTemplate(name="nap", steps=[Step("s", SleepStep(0.01))]))
    ended = EndedSpans("voltorch.v1.WorkflowService/RunExecution")
    telemetry.add_span_processor(ended)
    try:
        start = workflows_pb2.StartExecutionRequest(template_name="nap")
        req = workflows_pb2.RunExecutionRequest(start=start, terminal_only=True)
        messages = list(client.stubs.workflows.RunExecution(req, timeout=10))
        assert ended.done.wait(10)
    finally:
        telemetry.remove_span_processor(ended)
    assert [len(m.updates) for m in messages] == [0, 1]  # the start, then the terminal event
    m = client.metrics(["voltorch.events.delivered"])
    assert m.value("voltorch.events.delivered", {"rpc.method": "RunExecution"}) == 1


def test_helpers_components_call_feed_getmetrics(client: voltorch.Client, server: VoltorchServer) -> None:
    metrics = server.runtime.metrics
    assert all(c.metrics is metrics for c in server.runtime.components.values())
    metrics.workflows_started.add(2)
    metrics.workflow_finished("completed", 3.0)
    metrics.workflow_finished("failed", 1.5)
    metrics.record_step(0.2, "completed", kind="agent")
    metrics.record_coordination(0.7, "completed", mode="parallel")
    metrics.record_agent_task("a1", 0.3, success=True)
    metrics.record_agent_task("a1", 0.9, success=False)
    metrics.agent_load.set(2, {"agent.id": "a1"})
    metrics.agent_load.set_at(3, series_key({"agent.id": "a2"}))  # the dispatcher's way
    metrics.record_llm_call("gpt-test", 100, 20, 0.4)
    m = client.metrics(["voltorch.*", "gen_ai.*"])
    assert m.value("voltorch.workflows.started") >= 2
    assert m.value("voltorch.workflows.completed") >= 1 and m.value("voltorch.workflows.failed") >= 1
    (step,) = m.select("voltorch.workflow.step.duration", {"status": "completed", "kind": "agent"})
    assert (
        step.histogram is not None and step.histogram.count == 1 and step.histogram.p50 == pytest.approx(0.2)
    )
    assert m.value("voltorch.agent.tasks", {"agent.id": "a1", "outcome": "success"}) == 1
    assert m.value("voltorch.agent.tasks", {"agent.id": "a1", "outcome": "failure"}) == 1
    assert m.value("voltorch.agent.load", {"agent.id": "a1"}) == 2
    assert m.value("voltorch.agent.load", {"agent.id": "a2"}) == 3
    assert m.value("voltorch.coordinations", {"mode": "parallel"}) == 1
    tokens = {"gen_ai.request.model": "gpt-test"}
    assert m.value("voltorch.llm.tokens", {**tokens, "gen_ai.token.type": "input"}) == 100
    assert m.value("voltorch.llm.tokens", {**tokens, "gen_ai.token.type": "output"}) == 20
    assert m.value("gen_ai.client.operation.duration", tokens) == 1


def test_histogram_summaries_and_interval_samples() -> None:
    metrics = Metrics.for_server()
    try:
        collector = MetricCollector(metrics.reader)
        attrs = {"rpc.method": "X"}
        for v in range(1, 101):
            metrics.rpc_duration.record(float(v), attrs)
        metrics.workflows_started.add(5)
        (point,) = [p for p in collector.collect() if p.name == "rpc.server.duration"]
        h = point.histogram
        assert h is not None and (h.count, h.min, h.max, h.sum) == (100, 1.0, 100.0, 5050.0)
        assert 40 <= h.p50 <= 60 and 90 <= h.p95 <= 100 and 95 <= h.p99 <= 100
        _, first = collector.take_interval()
        metrics.rpc_duration.record(7.0, attrs)
        metrics.workflows_started.add(1)
        points, second = collector.take_interval()

        def sample(samples: list[Sample], name: str) -> Sample:
            return next(s for s in samples if s.name == name)

        assert sample(first, "rpc.server.duration").value == 100
        assert sample(second, "rpc.server.duration").value == 1  # the interval, not the total
        histogram = sample(second, "rpc.server.duration").histogram
        assert histogram is not None and histogram.max == 7.0
        assert sample(second, "voltorch.workflows.started").value == 6  # counters: running total
        assert next(p for p in points if p.name == "rpc.server.duration").value == 101
    finally:
        metrics.shutdown()


def _wait_for_collections(server: VoltorchServer, count: int) -> None:
    cond, seen = threading.Condition(), []

    def on_event(e: Any) -> None:
        if e.type == "system.metrics.collected":
            with cond:
                seen.append(e)
                cond.notify_all()

    server.runtime.events.add_listener(on_event)
    with cond:
        assert cond.wait_for(lambda: len(seen) >= count, timeout=15)


def test_history_is_persisted_filtered_and_survives_a_restart(config: Config) -> None:
    cfg = replace(config, metrics_interval=0.05)
    with VoltorchServer(cfg) as srv, voltorch.Client(srv.target) as c:
        c.state.set("h/k", 1)
        _wait_for_collections(srv, 2)
        m = c.metrics(["rpc.*"], history=True)
        assert m.collection_interval == pytest.approx(0.05) and m.retention == cfg.metrics_retention_seconds
        assert {s.name for s in m.history} == {"rpc.server.duration"}
        series = next(s for s in m.history if s.attributes.get("rpc.method") == "SetKey")
        assert len(series.samples) >= 1
        times = [s.time for s in series.samples if s.time is not None]
        assert len(times) == len(series.samples)
        assert times == sorted(times)
        assert c.metrics(["rpc.*"]).history == []  # history only when asked
        with pytest.raises(voltorch.InvalidArgumentError) as future:
            c.metrics(history=True, since=time.time() + 3600)
        assert future.value.fields == ["since"]
        with pytest.raises(voltorch.InvalidArgumentError) as glob:
            c.metrics(["bad name!"])
        assert glob.value.fields == ["names[0]"]
    with VoltorchServer(replace(cfg, metrics_interval=60)) as srv, voltorch.Client(srv.target) as c:
        again = c.metrics(["rpc.server.duration"], history=True)
        assert any(s.attributes.get("rpc.method") == "SetKey" for s in again.history)
        recent = c.metrics(["rpc.server.duration"], history=True, since=time.time() - 0.001)
        assert sum(len(s.samples) for s in recent.history) < sum(len(s.samples) for s in again.history)


def test_prometheus_endpoint(config: Config) -> None:
    with VoltorchServer(replace(config, prometheus_port=-1)) as srv, voltorch.Client(srv.target) as c:
        c.state.set("p/k", 1)
        port = int(c.health().component("watcher").details["prometheus_port"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    assert "rpc_server_duration" in text and 'rpc_method="SetKey"' in text
    assert "process_memory_usage" in text


# What an LLM call records: the SDK instruments record_llm_call recorded into before it kept plain series.
_LLM_CALLS = [
    ("gpt-a", 100, 20, 0.4, ""),
    ("gpt-a", 7, 0, 1.5, ""),
    ("gpt-b", 0, 0, 0.02, "RateLimitError"),
    ("gpt-a", 3000, 5, 12.0, ""),
    ("gpt-b", 0, 0, 0.3, "APITimeoutError"),
    ("gpt-b", 40, 2, 0.7, ""),
]


def _shown(collector: MetricCollector, names: set[str]) -> dict[tuple[str, frozenset], tuple]:
    """What GetMetrics shows of `names`: per name and attributes, the point without its time."""
    return {
        (p.name, frozenset(p.attributes.items())): (p.description, p.unit, p.kind, p.value, p.histogram)
        for p in collector.collect()
        if p.name in names
    }


def test_llm_calls_show_as_the_sdks_instruments_showed_them() -> None:
    """record_llm_call keeps plain series (no OpenTelemetry SDK record per call): GetMetrics shows what the
    SDK's counter and histograms it recorded into before showed, collection after collection."""
    names = {"voltorch.llm.tokens", "gen_ai.client.token.usage", "gen_ai.client.operation.duration"}
    ours = Metrics.for_server()
    reader = InMemoryMetricReader(
        preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    )
    provider = MeterProvider(metric_readers=[reader], views=_views())
    mine, theirs = MetricCollector(ours.reader), MetricCollector(reader)
    try:
        meter = provider.get_meter(SCOPE.name, SCOPE.version)
        tokens = meter.create_counter("voltorch.llm.tokens", unit="{token}", description="LLM tokens used")
        usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
        duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
        for _ in range(2):  # twice: the second collection adds to the first
            for model, tokens_in, tokens_out, seconds, error in _LLM_CALLS:
                ours.record_llm_call(model, tokens_in, tokens_out, seconds, error_type=error)
                base = {"gen_ai.request.model": model, "gen_ai.operation.name": "chat"}
                for kind, n in (("input", tokens_in), ("output", tokens_out)):
                    if n:
                        tokens.add(n, {**base, "gen_ai.token.type": kind})
                        usage.record(n, {**base, "gen_ai.token.type": kind})
                duration.record(seconds, {**base, "error.type": error} if error else base)
            got, expected = _shown(mine, names), _shown(theirs, names)
            assert len(expected) == 12 and got == expected
    finally:
        provider.shutdown()
        ours.shutdown()


def test_step_usage_shows_as_the_sdks_counters_showed_it() -> None:
    """record_usage (every LLM step) adds to plain counters by kept keys: GetMetrics shows what the SDK's
    counters it added to before showed."""
    names = {"voltorch.workflow.tokens", "voltorch.workflow.cost", "voltorch.workflow.llm_calls"}
    steps = [
        ("complete", TokenUsage(120, 30, 150, cost=0.25, llm_calls=1)),
        ("complete", TokenUsage(0, 0, 0)),
        ("review", TokenUsage(7, 0, 7, cost=0.0, llm_calls=2)),
        ("complete", TokenUsage(1, 2, 3, cost=0.125, llm_calls=1)),
    ]
    ours = Metrics.for_server()
    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[reader])
    mine, theirs = MetricCollector(ours.reader), MetricCollector(reader)
    try:
        meter = provider.get_meter(SCOPE.name, SCOPE.version)
        tokens = meter.create_counter(
            "voltorch.workflow.tokens", unit="{token}", description="Tokens used by executions, by template"
        )
        cost = meter.create_counter(
            "voltorch.workflow.cost", unit="USD", description="Cost of executions' model calls, by template"
        )
        calls = meter.create_counter("voltorch.workflow.llm_calls", unit="{call}")
        for _ in range(2):
            for template, used in steps:
                ours.record_usage(used, template=template)
                for kind, n in (("input", used.prompt_tokens), ("output", used.completion_tokens)):
                    if n:
                        tokens.add(n, {"template": template, "gen_ai.token.type": kind})
                if used.cost:
                    cost.add(used.cost, {"template": template})
                if used.llm_calls:
                    calls.add(used.llm_calls, {"template": template})
            got, expected = _shown(mine, names), _shown(theirs, names)
            assert len(expected) == 6 and got == expected
    finally:
        provider.shutdown()
        ours.shutdown()
