"""Tracing: the caller's trace continues on the server, into events and recorded errors; OTLP and file export;
ListErrors / GetTrace tell one story per trace or correlation."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import voltorch
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from voltorch.errors import from_rpc_error
from voltorch.v1 import orchestrator_pb2
from voltorch_server import telemetry
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

tracer = trace.get_tracer("voltorch-tests")


def hex_trace(span: trace.Span | ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x")


def server_spans(exporter: InMemorySpanExporter, name: str, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name and hex_trace(s) == trace_id]


def test_client_trace_continues_on_server_and_into_events(
    spans: InMemorySpanExporter, client: voltorch.Client
) -> None:
    with tracer.start_as_current_span("test.operation") as root:
        client.state.set("traced/k", {"v": 1})
    tid = hex_trace(root)
    (srv,) = server_spans(spans, "voltorch.v1.StateService/SetKey", tid)
    assert srv.kind == SpanKind.SERVER
    assert srv.parent is not None and srv.parent.span_id == root.get_span_context().span_id
    assert srv.attributes is not None
    assert srv.attributes["rpc.method"] == "SetKey" and srv.attributes["rpc.grpc.status_code"] == 0
    (changed,) = list(client.events.list("state.changed", trace_id=tid))
    assert changed.trace_id == tid
    assert changed.span_id == format(srv.context.span_id, "016x")


def test_forced_error_carries_the_trace_and_reads_as_one_story(
    spans: InMemorySpanExporter,
    client: voltorch.Client,
    server: VoltorchServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_get(key: str):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.runtime.state, "get", broken_get)
    with tracer.start_as_current_span("test.story") as root:
        client.state.set("story/a", 1)
        with pytest.raises(voltorch.VoltorchError) as err:
            client.state.get("story/a")
    assert err.value.code == grpc.StatusCode.INTERNAL
    tid = hex_trace(root)
    (failed,) = server_spans(spans, "voltorch.v1.StateService/GetKey", tid)
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert any(e.name == "exception" for e in failed.events)

    (rec,) = list(client.errors(trace_id=tid))
    assert (rec.component, rec.code) == ("state", "INTERNAL")
    assert rec.span_id == format(failed.context.span_id, "016x")
    assert (
        rec.details["method"] == "/voltorch.v1.StateService/GetKey" and rec.details["grpc_code"] == "INTERNAL"
    )
    assert "disk on fire" in rec.message

    story = client.trace(tid)
    kinds = [(type(e).__name__, getattr(e, "type", getattr(e, "code", ""))) for e in story.entries]
    assert kinds == [("Event", "state.changed"), ("ErrorRecord", "INTERNAL")]
    assert story.trace_ids == [tid] and set(story.components) >= {"state"} and not story.truncated
    health = client.health()
    assert health.error_count >= 1 and health.last_error is not None and health.last_error.trace_id == tid


def test_client_errors_are_recorded_only_when_configured(config: Config) -> None:
    for record, expected in ((False, 0), (True, 1)):
        with (
            VoltorchServer(replace(config, record_client_errors=record)) as srv,
            voltorch.Client(srv.target) as c,
        ):
            with tracer.start_as_current_span("test.notfound") as root, pytest.raises(voltorch.NotFoundError):
                c.state.get("no/such/key")
            errors = list(c.errors(trace_id=hex_trace(root)))
            assert len(errors) == expected
            if errors:
                assert errors[0].code == "KEY_NOT_FOUND" and errors[0].details["grpc_code"] == "NOT_FOUND"


def test_untraced_calls_still_get_trace_ids_when_nothing_exports(client: voltorch.Client) -> None:
    assert not telemetry.recording()
    client.state.set("untraced/k", 1)
    found: list[voltorch.Event | None] = [
        e for e in client.events.list("state.changed") if e.data.get("key") == "untraced/k"
    ]
    (changed,) = found or [None]
    assert changed is not None
    assert len(changed.trace_id) == 32 and len(changed.span_id) == 16


def test_sdk_propagation_can_be_turned_off(spans: InMemorySpanExporter, server: VoltorchServer) -> None:
    with voltorch.Client(server.target, tracing=False) as c, tracer.start_as_current_span("test.off") as root:
        c.state.set("off/k", 1)
    assert server_spans(spans, "voltorch.v1.StateService/SetKey", hex_trace(root)) == []


def test_server_tracing_off(config: Config, spans: InMemorySpanExporter) -> None:
    with VoltorchServer(replace(config, tracing=False)) as srv, voltorch.Client(srv.target) as c:
        with tracer.start_as_current_span("test.server-off") as root:
            c.state.set("srvoff/k", 1)
        assert server_spans(spans, "voltorch.v1.StateService/SetKey", hex_trace(root)) == []
        assert c.metrics(["rpc.server.duration"]).value("rpc.server.duration", {"rpc.method": "SetKey"}) == 1


class EndedSpans(SpanProcessor):
    """Signals when a span with a given name ends (the server ends a stream's span after the client left)."""

    def __init__(self, name: str):
        self.name = name
        self.ended: list[ReadableSpan] = []
        self.done = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == self.name:
            self.ended.append(span)
            self.done.set()


def test_a_stream_keeps_one_span_until_the_client_leaves(client: voltorch.Client) -> None:
    ended = EndedSpans("voltorch.v1.StateService/Watch")
    telemetry.add_span_processor(ended)
    try:
        with tracer.start_as_current_span("test.stream") as root:
            rev = client.state.set("s/a", 1).revision
            watch = client.state.watch(prefix="s/", start_revision=rev)
            assert next(iter(watch)).key == "s/a"
            client.state.set("s/b", 2)
            assert next(iter(watch)).key == "s/b"
            watch.close()
        assert ended.done.wait(10)
    finally:
        telemetry.remove_span_processor(ended)
    (span,) = ended.ended
    assert hex_trace(span) == hex_trace(root)
    assert span.attributes is not None
    assert span.attributes["rpc.server.messages_sent"] == 2
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


def test_trace_by_correlation_joins_components_and_traces(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    with tracer.start_as_current_span("test.publish") as first:
        client.events.publish("job.started", {"n": 1}, correlation_id="job-7", source="tests")
    with tracer.start_as_current_span("test.fail") as second, telemetry.correlated("job-7"):
        server.runtime.state.record_error("JOB_FAILED", "the job failed", details={"step": "s1"})
    client.events.publish("job.cleanup", correlation_id="job-7", source="tests")
    story = client.trace(correlation_id="job-7")
    assert [getattr(e, "type", None) or getattr(e, "code", None) for e in story.entries] == [
        "job.started",
        "JOB_FAILED",
        "job.cleanup",
    ]
    err = story.errors[0]
    assert err.component == "state" and err.correlation_id == "job-7" and err.details == {"step": "s1"}
    assert {hex_trace(first), hex_trace(second)} <= set(story.trace_ids)
    assert story.correlation_ids == ["job-7"] and set(story.components) == {"tests", "state"}
    # The same story from one of its traces: the correlation it touched is followed.
    assert [e.id for e in client.trace(hex_trace(second)).entries] == [e.id for e in story.entries]
    truncated = client.trace(correlation_id="job-7", max_entries=2)
    assert truncated.truncated and len(truncated.entries) == 2


def test_get_trace_and_list_errors_validate(client: voltorch.Client, server: VoltorchServer) -> None:
    with pytest.raises(voltorch.InvalidArgumentError) as bad:
        client.trace("not-a-trace-id")
    assert bad.value.fields == ["trace_id"]
    with pytest.raises(voltorch.NotFoundError):
        client.trace("0" * 31 + "1")
    with pytest.raises(ValueError):
        client.trace()
    with pytest.raises(grpc.RpcError) as none_given:
        client.stubs.orchestrator.GetTrace(orchestrator_pb2.GetTraceRequest())
    missing = from_rpc_error(none_given.value)
    assert isinstance(missing, voltorch.InvalidArgumentError) and missing.fields == ["id"]
    with pytest.raises(grpc.RpcError) as blank:  # blank is none (it used to reach SQL as "WHERE ORDER BY")
        client.stubs.orchestrator.GetTrace(orchestrator_pb2.GetTraceRequest(trace_id="  "))
    blank_given = from_rpc_error(blank.value)
    assert isinstance(blank_given, voltorch.InvalidArgumentError) and blank_given.fields == ["id"]
    with pytest.raises(voltorch.InvalidArgumentError) as bad_filter:
        list(client.errors(trace_id="xyz"))
    assert bad_filter.value.fields == ["trace_id"]
    with pytest.raises(voltorch.InvalidArgumentError) as bad_token:
        client.orchestrator.errors_page(page_token="garbage!")
    assert bad_token.value.fields == ["page_token"]


def test_list_errors_pages_newest_first_with_filters(client: voltorch.Client, server: VoltorchServer) -> None:
    for i in range(5):
        server.runtime.state.record_error("E_ODD" if i % 2 else "E_EVEN", f"error {i}")
    page, token = client.orchestrator.errors_page(component="state", page_size=2)
    assert [e.message for e in page] == ["error 4", "error 3"] and token
    assert [e.message for e in client.errors(component="state", page_size=2)] == [
        f"error {i}" for i in range(4, -1, -1)
    ]
    assert [e.message for e in client.errors(code="E_ODD")] == ["error 3", "error 1"]
    assert list(client.errors(component="workflows")) == []


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A local OTLP/gRPC trace receiver."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.spans: list[tuple[dict[str, str], trace_pb2.Span]] = []

    def Export(self, request, context):
        with self.cond:
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    self.spans.extend((resource, s) for s in ss.spans)
            self.cond.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()


def test_otlp_export_to_a_local_receiver(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver()
    rx = grpc.server(ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, rx)
    port = rx.add_insecure_port("127.0.0.1:0")
    rx.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    try:
        with VoltorchServer(config) as srv, voltorch.Client(srv.target) as c:
            with tracer.start_as_current_span("test.otlp") as root:
                c.state.set("otlp/k", 1)
            want = root.get_span_context().trace_id.to_bytes(16, "big")

            def exported() -> list:
                return [
                    (r, s) for r, s in receiver.spans if s.trace_id == want and s.name.endswith("/SetKey")
                ]

            with receiver.cond:
                assert receiver.cond.wait_for(exported, timeout=15)
                resource, span = exported()[0]
            assert resource.get("service.name", "").startswith("voltorch") or resource.get("service.name")
            assert span.parent_span_id == root.get_span_context().span_id.to_bytes(8, "big")
    finally:
        rx.stop(0)


def test_trace_export_to_a_file(config: Config, tmp_path: Path) -> None:
    out = tmp_path / "spans.jsonl"
    with (
        VoltorchServer(replace(config, trace_export=str(out))) as srv,
        voltorch.Client(srv.target) as c,
        tracer.start_as_current_span("test.file") as root,
    ):
        c.state.set("file/k", 1)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    tid = "0x" + hex_trace(root)
    assert any(
        s["name"] == "voltorch.v1.StateService/SetKey" and s["context"]["trace_id"] == tid for s in lines
    )


def test_a_remote_worker_joins_the_callers_trace(spans: InMemorySpanExporter, config: Config) -> None:
    seen: dict[str, str] = {}

    def handler(task: voltorch.WorkerTask) -> str:
        seen["trace_id"] = format(trace.get_current_span().get_span_context().trace_id, "032x")
        return "done"

    with VoltorchServer(replace(config, builtin_agents=False)) as srv, voltorch.Client(srv.target) as c:
        with voltorch.Worker(c, "traced-worker", ["trace"], handler) as worker:
            assert worker.connected.wait(15)
            with tracer.start_as_current_span("test.worker") as root:
                result = c.coordination.run("work", source_agent_id="traced-worker", wait_timeout=15)
        tid = hex_trace(root)
        assert result.output == "done" and seen["trace_id"] == tid
        assert [s for s in spans.get_finished_spans() if s.name == "worker.task" and hex_trace(s) == tid]
        story = [e.type for e in c.trace(tid).events]
        assert "coordination.completed" in story


@pytest.mark.parametrize(
    ("traceparent", "valid"),
    [
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", True),
        (
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
            True,
        ),  # a later version may extend
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", False),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01", False),
        ("garbage", False),
    ],
)
def test_traceparent_parsing(traceparent: str, valid: bool) -> None:
    ids = telemetry.trace_ids_from(traceparent, "vendor=x")
    assert (ids.trace_id == "0af7651916cd43dd8448eb211c80319c") is valid
    span = trace.get_current_span(telemetry.context_from(traceparent, "vendor=x"))
    assert span.get_span_context().is_valid is valid
    if valid:
        assert span.get_span_context().trace_state.get("vendor") == "x"
        assert span.get_span_context().is_remote
