"""OpenTelemetry set-up and the trace-context helpers every component uses.

Tracing is process-wide (OpenTelemetry has one global TracerProvider): the first server installs an SDK
provider whose sampler records spans only while some exporter is attached, so with nothing exporting a
span costs little more than an object (its random ids are drawn only when read) — yet every event and
error still carries real trace ids. Each server adds its exporters (OTLP from the standard OTEL_* variables, a console/file exporter from
config) while it runs and removes them when it stops; tests attach an in-memory exporter the same way.

Conventions for components (spans come from `tracer`):
  * name spans `<component>.<operation>`: "workflow.execute", "workflow.step", "coordination.dispatch",
    "agent.run", "llm.chat" (the GenAI convention: "chat <model>" for the LLM call itself is fine too);
  * work that continues later or elsewhere (a queued coordination, a resumed workflow, a remote worker's
    task) stores `current_trace().traceparent` and starts its span with `context=context_from(...)`;
  * attributes: `voltorch.execution_id`, `voltorch.step_id`, `voltorch.coordination_id`, `voltorch.agent_id`,
    `voltorch.correlation_id`; LLM calls: `gen_ai.system`, `gen_ai.request.model`,
    `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` (see the GEN_AI_* constants);
  * `with correlated(execution_id):` makes errors recorded inside carry that correlation id.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import TraceFlags, TraceState

from .frozen import made

log = logging.getLogger("voltorch.telemetry")

tracer = trace.get_tracer("voltorch_server")

# GenAI semantic-convention attribute names (LLM call spans and metrics).
GEN_AI_SYSTEM = "gen_ai.system"  # e.g. "openai"
GEN_AI_OPERATION = "gen_ai.operation.name"  # e.g. "chat"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # metric attribute: "input" | "output"


@dataclass(frozen=True)
class TraceIds:
    traceparent: str = ""
    tracestate: str = ""
    trace_id: str = ""
    span_id: str = ""


_NO_TRACE = TraceIds()  # frozen: one shared value for "no span"


def current_trace() -> TraceIds:
    """The W3C trace context of the active span (empty strings when there is none). Made as TraceIds(...)
    makes it, without the frozen dataclass's __init__: a workflow step asks ~2 times."""
    span_ctx = trace.get_current_span().get_span_context()
    if not span_ctx.is_valid:
        return _NO_TRACE
    trace_id, span_id = format(span_ctx.trace_id, "032x"), format(span_ctx.span_id, "016x")
    ids = made(
        TraceIds,
        traceparent=f"00-{trace_id}-{span_id}-{span_ctx.trace_flags:02x}",
        tracestate=span_ctx.trace_state.to_header() if span_ctx.trace_state else "",
        trace_id=trace_id,
        span_id=span_id,
    )
    return ids


# W3C traceparent: version-traceid-spanid-flags (a future version may append fields).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def _span_context(traceparent: str, tracestate: str = "") -> trace.SpanContext | None:
    """The remote span context a traceparent names (None when malformed), per W3C Trace Context."""
    m = _TRACEPARENT.fullmatch(traceparent.strip())
    if m is None:
        return None
    version, trace_hex, span_hex, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags, 16)), trace_state=state
    )


@lru_cache(maxsize=4096)
def trace_ids_from(traceparent: str, tracestate: str = "") -> TraceIds:
    """Parse a traceparent header into ids (empty when malformed). Cached: every event and coordination of
    an execution carries its trace (a workflow step parses the same header ~6 times); TraceIds is frozen."""
    span_ctx = _span_context(traceparent, tracestate)
    if span_ctx is None:
        return TraceIds()
    return TraceIds(
        traceparent, tracestate, format(span_ctx.trace_id, "032x"), format(span_ctx.span_id, "016x")
    )


@lru_cache(maxsize=4096)
def context_from(traceparent: str, tracestate: str = "") -> otel_context.Context:
    """An OpenTelemetry context to start child spans under a propagated trace (empty when malformed).
    Cached as trace_ids_from is: every step attempt and agent task of an execution starts its span under
    the execution's trace (a Context cannot be changed, nor can the span in it)."""
    span_ctx = _span_context(traceparent, tracestate)
    if span_ctx is None:
        return otel_context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(span_ctx), otel_context.Context())


def context_from_metadata(metadata: Any) -> otel_context.Context | None:
    """The trace context carried by gRPC metadata (traceparent/tracestate), or None when absent."""
    traceparent = tracestate = ""
    for key, value in metadata or ():
        if key == "traceparent":
            traceparent = value
        elif key == "tracestate":
            tracestate = value
    if not traceparent:
        return None
    return context_from(traceparent, tracestate)


# -- correlation ids --------------------------------------------------------------------------------

_correlation: contextvars.ContextVar[str] = contextvars.ContextVar("voltorch_correlation", default="")


def current_correlation() -> str:
    """The correlation id set by the innermost `correlated()` block ("" outside one)."""
    return _correlation.get()


@contextlib.contextmanager
def correlated(correlation_id: str) -> Iterator[None]:
    """Errors recorded inside this block (on this thread) carry `correlation_id`."""
    token = _correlation.set(correlation_id)
    try:
        yield
    finally:
        _correlation.reset(token)


# -- the process-wide pipeline --------------------------------------------------------------------


class _Fanout(SpanProcessor):
    """The one processor installed on the global provider; servers and tests attach theirs to it.
    It forwards SpanProcessor's public hooks (on_start, on_end, shutdown, force_flush)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processors: tuple[SpanProcessor, ...] = ()

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            self.processors = (*self.processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        with self._lock:
            self.processors = tuple(p for p in self.processors if p is not processor)

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        for p in self.processors:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for p in self.processors:
            p.on_end(span)

    def shutdown(self) -> None:
        for p in self.processors:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


_fanout = _Fanout()


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (the standard names); default parentbased_always_on."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        ratio = 1.0
    samplers = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBasedTraceIdRatio(ratio),
    }
    if name not in samplers:
        log.warning("OTEL_TRACES_SAMPLER=%s is not supported; using parentbased_always_on", name)
        name = "parentbased_always_on"
    return samplers[name]()


class _RecordWhileExporting(Sampler):
    """The configured sampler while an exporter is attached; otherwise DROP (ids are still generated)."""

    def __init__(self) -> None:
        self._on = sampler_from_env(os.environ)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if _fanout.processors:
            return self._on.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        parent = trace.get_current_span(parent_context).get_span_context()
        return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"RecordWhileExporting{{{self._on.get_description()}}}"


_install_lock = threading.Lock()
_installed = False
_own_ids: IdGenerator | None = None  # the id generator of the provider install() made (None: not ours)
_DEFAULT_FLAGS = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_RANDOM_FLAGS = trace.TraceFlags(trace.TraceFlags.RANDOM_TRACE_ID)


def install() -> None:
    """Once per process: make the global TracerProvider an SDK one feeding the fan-out processor.

    An SDK provider the embedding application installed first is kept (its sampler decides); the
    fan-out is added to it. OTEL_SDK_DISABLED=true leaves tracing to the no-op API.
    """
    global _installed, _own_ids
    with _install_lock:
        if _installed:
            return
        _installed = True
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return
        current = trace.get_tracer_provider()
        if isinstance(current, SdkTracerProvider):
            current.add_span_processor(_fanout)
            return
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "voltorch"}))
        ids = RandomIdGenerator()
        provider = SdkTracerProvider(
            sampler=_RecordWhileExporting(), resource=resource, shutdown_on_exit=False, id_generator=ids
        )
        provider.add_span_processor(_fanout)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is provider:
            _own_ids = ids


class _UnsampledSpan(trace.NonRecordingSpan):
    """A non-recording span whose ids are drawn when first read (an error, an event, a child span), not
    on every RPC: most calls never read them. Drawn once, under a lock, so every reader sees the same."""

    def __init__(self, parent: otel_context.Context, ids: IdGenerator) -> None:
        self._parent = parent
        self._ids = ids
        self._drawn: trace.SpanContext | None = None

    def get_span_context(self) -> trace.SpanContext:
        drawn = self._drawn
        if drawn is None:
            # The parent's first: outside the lock, as the parent may be one of these (a step's span under
            # an RPC's) whose ids are drawn under the same lock.
            up = trace.get_current_span(self._parent).get_span_context()
            with _draw_lock:
                drawn = self._drawn
                if drawn is None:
                    drawn = self._drawn = self._draw(up)
        return drawn

    def _draw(self, up: trace.SpanContext) -> trace.SpanContext:
        ids = self._ids
        if up.is_valid:
            trace_id, random_id, state = up.trace_id, up.trace_flags.random_trace_id, up.trace_state
        else:
            trace_id, random_id, state = ids.generate_trace_id(), ids.is_trace_id_random(), None
        flags = _RANDOM_FLAGS if random_id else _DEFAULT_FLAGS
        return trace.SpanContext(
            trace_id, ids.generate_span_id(), is_remote=False, trace_flags=flags, trace_state=state
        )

    def __repr__(self) -> str:
        return f"NonRecordingSpan({self.get_span_context()!r})"


_draw_lock = threading.Lock()


def unsampled_span(parent: otel_context.Context) -> trace.Span | None:
    """The span the tracer would start under `parent` right now if its sampler drops it — the parent's
    trace (or a new one), a new span id, not sampled, not recording — built without the SDK's detour
    through the sampler and attribute handling, its ids drawn only when read (a few µs on every RPC).
    None when the tracer must decide: spans are being recorded, or the process's provider is not the one
    `install()` made."""
    ids = _own_ids
    if ids is None or _fanout.processors:
        return None
    return _UnsampledSpan(parent, ids)


class internal_span:  # noqa: N801 - used as the function it was: `with internal_span(...) as span`
    """`tracer.start_as_current_span` for the spans every workflow step and agent task opens: while nothing
    records spans, the non-recording span the SDK would have made (the parent's trace, a new span id) is
    built directly (unsampled_span) and made current; its attributes are left out, as the SDK drops them
    from a span it does not record. Saves the sampler, the attribute cleaning and the span processors'
    detour (~20 µs a span). A class, not a generator-based context manager: a step opens two."""

    __slots__ = ("_name", "_context", "_attributes", "_token", "_recorded")

    def __init__(
        self,
        name: str,
        *,
        context: otel_context.Context | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._context = context
        self._attributes = attributes
        self._token: contextvars.Token[otel_context.Context] | None = None
        self._recorded: Any = None

    def __enter__(self) -> trace.Span:
        context = self._context
        parent = context if context is not None else otel_context.get_current()
        dropped = unsampled_span(parent)
        if dropped is None:
            self._recorded = tracer.start_as_current_span(
                self._name, context=context, attributes=self._attributes
            )
            return self._recorded.__enter__()
        self._token = otel_context.attach(trace.set_span_in_context(dropped, parent))
        return dropped

    def __exit__(self, *exc: Any) -> bool | None:
        recorded = self._recorded
        if recorded is not None:
            return recorded.__exit__(*exc)
        assert self._token is not None  # entered
        otel_context.detach(self._token)
        return None


def add_span_processor(processor: SpanProcessor) -> None:
    """Send every span this process records to `processor` (e.g. an in-memory exporter in a test)."""
    install()
    _fanout.add(processor)


def remove_span_processor(processor: SpanProcessor) -> None:
    _fanout.remove(processor)


def recording() -> bool:
    """Whether spans are being recorded (some exporter is attached)."""
    return bool(_fanout.processors)


class _JsonLines(ConsoleSpanExporter):
    """One JSON span per line, to a file or stderr (local debugging)."""

    def __init__(self, out: IO[str], owned: bool):
        super().__init__(out=out, formatter=lambda span: span.to_json(indent=None) + os.linesep)
        self._file, self._owned = out, owned

    def shutdown(self) -> None:
        if self._owned:
            self._file.close()


def exporters_from_env(env: Mapping[str, str]) -> list[str]:
    """Exporter names from OTEL_TRACES_EXPORTER; "otlp" also when only an OTLP endpoint is set."""
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    return [n for n in names if n != "none"]


class Tracing:
    """The exporters one server attaches to the process's trace pipeline while it runs."""

    def __init__(self, processors: list[SpanProcessor], *, enabled: bool = True):
        self.processors = processors
        self.enabled = enabled
        self._started = False

    @classmethod
    def from_config(cls, config: Any, env: Mapping[str, str] | None = None) -> Tracing:
        env = os.environ if env is None else env
        processors: list[SpanProcessor] = []
        for name in exporters_from_env(env):
            if name == "otlp":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                processors.append(BatchSpanProcessor(OTLPSpanExporter()))
            elif name == "console":
                processors.append(BatchSpanProcessor(_JsonLines(sys.stderr, owned=False)))
            else:
                log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (use otlp or console)", name)
        target = getattr(config, "trace_export", "")
        if target == "console":
            processors.append(BatchSpanProcessor(_JsonLines(sys.stderr, owned=False)))
        elif target:
            processors.append(BatchSpanProcessor(_JsonLines(open(target, "a", encoding="utf-8"), owned=True)))  # noqa: SIM115
        return cls(processors, enabled=getattr(config, "tracing", True))

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        install()
        for p in self.processors:
            _fanout.add(p)

    def stop(self) -> None:
        """Detach and flush this server's exporters."""
        if not self._started:
            return
        self._started = False
        for p in self.processors:
            _fanout.remove(p)
        for p in self.processors:
            try:
                p.shutdown()
            except Exception:
                log.exception("span exporter shutdown failed")
