"""A span and a latency sample per RPC, and failed RPCs recorded with their trace ids.

The outermost server interceptor: continues the caller's W3C trace context (`traceparent` metadata)
or starts a new trace, keeps the span current while the handler runs (for streams: around each step
of the generator, so nothing leaks between the RPC threads' calls), and records
`rpc.server.duration` per method and status code. Errors mapped by `_status` reach this server's
error log through `_status.error_hooks`, routed by a context variable set here — so several servers
in one process each record their own.

It runs on every call, so it is kept cheap: the wrapped handler is built once per method (the call's
metadata is read from its context), the latency goes to a plain-Python histogram series kept per
method and code (metrics.RpcDurations), and while no exporter is attached the span is built directly
as the non-recording span the SDK would have built (telemetry.unsampled_span: still with real ids, drawn
when events or errors read them). Handlers are rebuilt with grpc's public constructors (_handlers.rebuild).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from .. import errors as e
from ..components.system import ErrorLog
from ..metrics import Metrics, RpcSeries
from ..storage import storage_error
from ..telemetry import context_from_metadata, tracer, unsampled_span
from . import _status
from ._handlers import behaviour, rebuild

ErrorRecorder = Callable[[str, BaseException, grpc.StatusCode], None]

_recorder: contextvars.ContextVar[ErrorRecorder | None] = contextvars.ContextVar(
    "voltorch_rpc_errors", default=None
)

# An event stream's count of events sent, set by the interceptor while the handler makes a message: a
# message may carry a batch of events (or none: a heartbeat), so the handler says how many (count_events).
_events_sent: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "voltorch_events_sent", default=None
)


def count_events(n: int) -> None:
    """Called by a stream handler for each message it yields: the number of events in it."""
    box = _events_sent.get()
    if box is not None:
        box[0] += n


# Codes that mean the server failed (OpenTelemetry's rule for server spans); others are the caller's.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
# Flow control rather than failure: a stream ended with a resume point.
_NOT_ERRORS = frozenset({"STREAM_CLOSED", "SUBSCRIBER_OVERFLOW"})
# Which component a service's failures belong to.
COMPONENT_OF_SERVICE = {
    "voltorch.v1.StateService": "state",
    "voltorch.v1.EventService": "events",
    "voltorch.v1.CoordinationService": "coordination",
    "voltorch.v1.WorkflowService": "workflows",
    "voltorch.v1.OrchestratorService": "watcher",
}
# Streams whose messages are events delivered to a subscriber.
EVENT_STREAMS = frozenset(
    {
        "/voltorch.v1.EventService/Subscribe",
        "/voltorch.v1.WorkflowService/WatchExecution",
        "/voltorch.v1.WorkflowService/RunExecution",
    }
)
# Stream messages are counted locally and added to the counters every 64 messages or 0.5 s.
_FLUSH_EVERY = 64
_FLUSH_SECONDS = 0.5
_EMPTY = otel_context.Context()


def _route(method: str, exc: BaseException, code: grpc.StatusCode) -> None:
    recorder = _recorder.get()
    if recorder is not None:
        recorder(method, exc, code)


if _route not in _status.error_hooks:
    _status.error_hooks.append(_route)


def rpc_error_recorder(
    errors: ErrorLog,
    *,
    record_client_errors: bool = False,
    on_storage_error: Callable[[BaseException], None] | None = None,
) -> ErrorRecorder:
    """Record failed RPCs: server-side failures always, the caller's mistakes only when asked. A failure
    caused by the database file (a damaged page, an I/O error) is the storage component's: it is told
    first (recording the error may itself need the file) and the record is filed under it."""

    def record(method: str, exc: BaseException, code: grpc.StatusCode) -> None:
        reason = exc.reason if isinstance(exc, e.VoltorchError) else "INTERNAL"
        if reason in _NOT_ERRORS:
            return
        stored = storage_error(exc)
        if stored is not None and on_storage_error is not None:
            on_storage_error(stored)
        server_side = code in SERVER_ERRORS
        span = trace.get_current_span()
        if server_side and span.is_recording():
            span.record_exception(exc)
        if not (server_side or record_client_errors):
            return
        service, _, name = method.lstrip("/").rpartition("/")
        message = exc.message if isinstance(exc, e.VoltorchError) else f"{type(exc).__name__}: {exc}"
        errors.record(
            "storage" if stored is not None else COMPONENT_OF_SERVICE.get(service, "server"),
            reason,
            message,
            details={"method": method, "grpc_code": code.name, **getattr(exc, "metadata", {})},
        )

    return record


class _Method:
    """Per-method constants, computed once: span name, attributes, metric attribute sets and latency
    series per code, and the wrapped handler."""

    __slots__ = ("name", "attributes", "_by_code", "_series", "events", "cached")

    def __init__(self, full: str):
        service, _, method = full.lstrip("/").rpartition("/")
        self.name = f"{service}/{method}"
        self.attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        self._by_code: dict[grpc.StatusCode, dict[str, Any]] = {}
        self._series: dict[grpc.StatusCode, RpcSeries] = {}
        self.events = full in EVENT_STREAMS
        self.cached: tuple[Any, Any] = (None, None)  # (a handler, its wrapper)

    def metric_attributes(self, code: grpc.StatusCode) -> dict[str, Any]:
        attrs = self._by_code.get(code)
        if attrs is None:
            attrs = self._by_code[code] = {
                "rpc.service": self.attributes["rpc.service"],
                "rpc.method": self.attributes["rpc.method"],
                "rpc.grpc.status_code": code.value[0],
            }
        return attrs

    def series(self, metrics: Metrics, code: grpc.StatusCode) -> RpcSeries:
        s = self._series.get(code)
        if s is None:
            s = self._series[code] = metrics.rpc_duration.series(self.metric_attributes(code))
        return s


class TelemetryInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics, on_error: ErrorRecorder | None = None, *, tracing: bool = True):
        self.metrics = metrics
        self.on_error = on_error
        self.tracing = tracing
        self._methods: dict[str, _Method] = {}

    def _method(self, full: str) -> _Method:
        m = self._methods.get(full)
        if m is None:
            m = self._methods[full] = _Method(full)
        return m

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        m = self._method(handler_call_details.method)
        inner, wrapped = m.cached
        if inner is handler:  # the same handler as last time (always, unless an inner interceptor
            return wrapped  # made one for this call): its wrapper is reusable
        wrap = self._stream if handler.response_streaming else self._unary
        wrapped = rebuild(handler, wrap(behaviour(handler), m))
        m.cached = (handler, wrapped)
        return wrapped

    def _start(
        self, m: _Method, context: grpc.ServicerContext
    ) -> tuple[trace.Span | None, otel_context.Context | None]:
        """The call's span (None when there is nothing to finish) and the context that makes it current."""
        if not self.tracing:
            return None, None
        parent = context_from_metadata(context.invocation_metadata()) or _EMPTY
        dropped = unsampled_span(parent)
        if dropped is not None:  # nothing to finish: the span records nothing
            return None, set_span_in_context(dropped, parent)
        span = tracer.start_span(m.name, context=parent, kind=SpanKind.SERVER, attributes=m.attributes)
        return span, set_span_in_context(span, parent)

    def _finish(
        self, span: trace.Span | None, m: _Method, code: grpc.StatusCode, t0: float, ctx: Any
    ) -> None:
        m.series(self.metrics, code).add((time.perf_counter() - t0) * 1e3)
        if span is not None:
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in SERVER_ERRORS:
                    span.set_status(Status(StatusCode.ERROR, _details(ctx) or code.name))
            span.end()

    def _unary(self, fn: Callable, m: _Method) -> Callable:
        ok = m.series(self.metrics, grpc.StatusCode.OK)
        on_error = self.on_error
        start = self._start
        clock = time.perf_counter
        attach, detach = otel_context.attach, otel_context.detach

        def handler(request, context):
            t0 = clock()
            span, ctx = start(m, context)
            token = attach(ctx) if ctx is not None else None
            rtoken = _recorder.set(on_error)
            try:
                response = fn(request, context)
            except BaseException:
                _recorder.reset(rtoken)
                if token is not None:
                    detach(token)
                self._finish(span, m, _code(context, grpc.StatusCode.UNKNOWN), t0, context)
                raise
            _recorder.reset(rtoken)
            if token is not None:
                detach(token)
            # A normal return is OK: servicers report failures only by raising (see _status).
            if span is None:
                ok.add((clock() - t0) * 1e3)
            else:
                self._finish(span, m, grpc.StatusCode.OK, t0, context)
            return response

        return handler

    def _stream(self, fn: Callable, m: _Method) -> Callable:
        def handler(request, context) -> Iterator[Any]:
            t0 = time.perf_counter()
            span, ctx = self._start(m, context)
            code = grpc.StatusCode.OK
            sent = pending = 0
            events = [0] if m.events else None  # events in the messages not yet counted
            flushed = t0
            it: Iterator[Any] | None = None
            try:
                while True:
                    token = otel_context.attach(ctx) if ctx is not None else None
                    rtoken = _recorder.set(self.on_error)
                    etoken = _events_sent.set(events)
                    try:
                        if it is None:
                            it = iter(fn(request, context))
                        item = next(it)
                    except StopIteration:
                        break
                    finally:
                        _events_sent.reset(etoken)
                        _recorder.reset(rtoken)
                        if token is not None:
                            otel_context.detach(token)
                    sent += 1
                    pending += 1
                    if pending >= _FLUSH_EVERY or time.perf_counter() - flushed >= _FLUSH_SECONDS:
                        self._count(m, pending, events)
                        pending, flushed = 0, time.perf_counter()
                    yield item
            except GeneratorExit:
                code = grpc.StatusCode.CANCELLED
                if it is not None and hasattr(it, "close"):
                    token = otel_context.attach(ctx) if ctx is not None else None
                    try:
                        it.close()  # run the handler's cleanup (e.g. unsubscribe) now, on this thread
                    finally:
                        if token is not None:
                            otel_context.detach(token)
                raise
            except BaseException:
                code = _code(context, grpc.StatusCode.UNKNOWN)
                raise
            finally:
                if pending:
                    self._count(m, pending, events)
                if code is grpc.StatusCode.OK:
                    code = _code(context, grpc.StatusCode.OK)
                    if code is grpc.StatusCode.OK and not context.is_active():
                        code = grpc.StatusCode.CANCELLED  # the handler noticed the client had left
                if span is not None and span.is_recording():
                    span.set_attribute("rpc.server.messages_sent", sent)
                self._finish(span, m, code, t0, context)

        return handler

    def _count(self, m: _Method, n: int, events: list[int] | None) -> None:
        attrs = m.metric_attributes(grpc.StatusCode.OK)
        self.metrics.rpc_stream_messages.add(n, attrs)
        if events is not None and events[0]:
            self.metrics.events_delivered.add(events[0], attrs)
            events[0] = 0


def _code(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    try:
        code = context.code()
    except Exception:
        return default
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    for c in grpc.StatusCode:  # an int code set by the handler
        if c.value[0] == code:
            return c
    return default


def _details(context: Any) -> str:
    try:
        return str(context.details() or "")
    except Exception:
        return ""


def telemetry_interceptor(runtime: Any) -> TelemetryInterceptor:
    """The interceptor for one server: its metrics, its error log, tracing per its config."""
    cfg = runtime.config
    return TelemetryInterceptor(
        runtime.metrics,
        rpc_error_recorder(
            runtime.errors,
            record_client_errors=cfg.record_client_errors,
            on_storage_error=runtime.storage.failed,
        ),
        tracing=cfg.tracing,
    )
