"""OpenTelemetry set-up and the trace-context helpers every component uses."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()

tracer = trace.get_tracer("voltorch_server")


@dataclass(frozen=True)
class TraceIds:
    traceparent: str = ""
    tracestate: str = ""
    trace_id: str = ""
    span_id: str = ""


def current_trace() -> TraceIds:
    """The W3C trace context of the active span (empty strings when there is none)."""
    span_ctx = trace.get_current_span().get_span_context()
    if not span_ctx.is_valid:
        return TraceIds()
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return TraceIds(
        traceparent=carrier.get("traceparent", ""),
        tracestate=carrier.get("tracestate", ""),
        trace_id=format(span_ctx.trace_id, "032x"),
        span_id=format(span_ctx.span_id, "016x"),
    )


def trace_ids_from(traceparent: str, tracestate: str = "") -> TraceIds:
    """Parse a traceparent header into ids (empty when malformed)."""
    ctx = _propagator.extract({"traceparent": traceparent, "tracestate": tracestate})
    span_ctx = trace.get_current_span(ctx).get_span_context()
    if not span_ctx.is_valid:
        return TraceIds()
    return TraceIds(
        traceparent, tracestate, format(span_ctx.trace_id, "032x"), format(span_ctx.span_id, "016x")
    )


def context_from(traceparent: str, tracestate: str = "") -> otel_context.Context:
    """An OpenTelemetry context to start child spans under a propagated trace."""
    return _propagator.extract({"traceparent": traceparent, "tracestate": tracestate})
