"""W3C trace context from the caller to the server: a client interceptor, on by default.

When the calling code runs inside an OpenTelemetry span (its app configured the OpenTelemetry SDK, or
it continues a propagated context), the span's context is injected into the call's metadata
(`traceparent`, `tracestate`, and baggage per OTEL_PROPAGATORS), and the server's spans, events and
errors join that trace. Without a current span nothing is added, so the cost is one context lookup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._metadata import MetadataInterceptor

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - opentelemetry-api is a dependency; tolerate its absence
    otel_context = propagate = trace = None  # type: ignore[assignment]


def _metadata() -> list[tuple[str, str]]:
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


class TraceContextInterceptor(MetadataInterceptor):
    """Adds the current OpenTelemetry trace context to every call's metadata."""

    def __init__(self) -> None:
        super().__init__(_metadata)


def available() -> bool:
    return trace is not None


@contextlib.contextmanager
def continue_trace(traceparent: str, name: str, attributes: dict[str, Any] | None = None) -> Iterator[None]:
    """Run a block inside a propagated trace (e.g. a worker's task): the remote context becomes current,
    so calls made inside carry it, and with an OpenTelemetry SDK configured a CONSUMER span is recorded."""
    if trace is None or not traceparent:
        yield
        return
    token = otel_context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        with trace.get_tracer("voltorch.sdk").start_as_current_span(
            name, kind=trace.SpanKind.CONSUMER, attributes=attributes
        ):
            yield
    finally:
        otel_context.detach(token)
