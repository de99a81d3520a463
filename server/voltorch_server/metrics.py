"""Every OpenTelemetry metric instrument of one server, in one place.

Each server has its own (non-global) MeterProvider, so several servers in one process (the tests) keep
separate numbers. Components reach this server's instruments as `self.metrics` (set by the Runtime;
a no-op set until then) and push what *happens*:

    self.metrics.workflow_finished("completed", duration_s)        # or "failed" / "cancelled" / "timed_out"
    self.metrics.workflows_started.add(1)
    self.metrics.record_step(duration_s, "completed", kind="agent")
    self.metrics.record_coordination(duration_s, "completed", mode="parallel")
    self.metrics.record_agent_task(agent_id, duration_s, success=True)
    self.metrics.agent_load.set(in_flight, {"agent.id": agent_id})
    self.metrics.record_llm_call(model, input_tokens, output_tokens, duration_s, error_type="")
    self.metrics.observe_llm_endpoints(limiters.snapshots)         # pulled: in flight, window, 429s ...

Levels (workflows active/queued, coordination queue depth, registered agents, connected workers,
subscribers) are *pulled*: the watcher reads them from each component's `details()` (keys in LEVELS) and
sets the gauges, so they never drift. RPC counts/latencies and event publish/deliver counts are recorded
by the server itself.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import replace
from itertools import accumulate
from typing import Any

import psutil
from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    MetricsData,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import __version__
from .telemetry import (
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OPERATION,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_TOKEN_TYPE,
)

_MS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
_S_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)

# details() key of a component -> level gauge name (summed over components).
LEVELS = {
    "active_workflows": "voltorch.workflows.active",
    "queued_workflows": "voltorch.workflows.queued",
    "queue_depth": "voltorch.coordination.queue_depth",
    "registered_agents": "voltorch.agents.registered",
    "connected_workers": "voltorch.workers.connected",
    "subscribers": "voltorch.subscribers",
}

# Event type prefixes reported as the `event.domain` attribute; anything else is "custom".
_DOMAINS = frozenset(
    {"orchestrator", "workflow", "coordination", "agent", "state", "component", "system", "worker", "event"}
)


def _views() -> list[View]:
    """The buckets of the histograms (the plain ones below use the same; an SDK histogram of these names
    would get them from these views)."""

    def buckets(name: str, bounds: tuple[float, ...]) -> View:
        return View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(bounds))

    return [
        buckets("voltorch.*.duration", _S_BUCKETS),
        buckets("gen_ai.client.operation.duration", _S_BUCKETS),
        buckets("gen_ai.client.token.usage", _TOKEN_BUCKETS),
    ]


class Metrics:
    """The instruments of one server. Build with `Metrics.for_server(config)`; `Metrics.noop()` records nothing."""

    def __init__(
        self,
        provider: metrics_api.MeterProvider,
        reader: InMemoryReader | None = None,
        histograms: Mapping[str, PlainHistogram] | None = None,
    ):
        self.provider = provider
        self.reader = reader  # what GetMetrics and the history read (None for the no-op set)
        self._prometheus: Any = None
        self.prometheus_port = 0
        m = provider.get_meter(SCOPE.name, SCOPE.version)
        self.meter = m
        # The histograms recorded on every RPC, step and coordination are aggregated outside the SDK (see
        # PlainHistogram); `for_server` hands the same ones to the readers.
        h = histograms if histograms is not None else plain_histograms()
        # RPC (the server interceptor).
        self.rpc_duration = h[RpcDurations.name]
        self.rpc_stream_messages = m.create_counter(
            "rpc.server.stream.messages_sent", unit="{message}", description="Messages sent on server streams"
        )
        # Events
        # Counted in a plain dict on the publish path (under the database's writer lock), read at collection.
        self._published: dict[str, int] = {}
        self._domain_of: dict[str, str] = {}  # event type -> its domain in voltorch.events.published
        m.create_observable_counter(
            "voltorch.events.published",
            [self._published_totals],
            unit="{event}",
            description="Events appended to the log",
        )
        self.events_delivered = m.create_counter(
            "voltorch.events.delivered", unit="{event}", description="Events sent to stream subscribers"
        )
        # Workflows (the counters of every execution and step: summed in plain Python, see PlainCounter)
        self.workflows_started = PlainCounter(m, "voltorch.workflows.started", unit="{workflow}")
        self.workflows_completed = PlainCounter(m, "voltorch.workflows.completed", unit="{workflow}")
        self.workflows_failed = PlainCounter(
            m, "voltorch.workflows.failed", unit="{workflow}", description="Failed or timed-out executions"
        )
        self.workflows_cancelled = PlainCounter(m, "voltorch.workflows.cancelled", unit="{workflow}")
        self.workflow_duration = h["voltorch.workflow.duration"]
        self.workflow_tokens = PlainCounter(
            m,
            "voltorch.workflow.tokens",
            unit="{token}",
            description="Tokens used by executions, by template",
        )
        self.workflow_cost = PlainCounter(
            m,
            "voltorch.workflow.cost",
            unit="USD",
            description="Cost of executions' model calls, by template",
        )
        self.workflow_llm_calls = PlainCounter(m, "voltorch.workflow.llm_calls", unit="{call}")
        self._usage_keys: dict[str, tuple[tuple, tuple, tuple]] = {}  # see record_usage
        self.step_duration = h["voltorch.workflow.step.duration"]
        # Coordination and agents
        self.coordinations = PlainCounter(m, "voltorch.coordinations", unit="{coordination}")
        self.coordination_duration = h["voltorch.coordination.duration"]
        self.agent_tasks = PlainCounter(
            m, "voltorch.agent.tasks", unit="{task}", description="Agent tasks by agent and outcome"
        )
        self.agent_task_duration = h["voltorch.agent.task.duration"]
        self.agent_load = PlainGauge(m, "voltorch.agent.load", unit="{task}", description="Tasks in flight")
        self._steps: dict[tuple[str, str], Series] = {}  # see record_step
        self._coordinations: dict[tuple[str, str], tuple[tuple, Series]] = {}
        self._agent_tasks: dict[tuple[str, bool], tuple[tuple, Series]] = {}
        # LLM (GenAI semantic conventions + a plain token counter), recorded on every LLM call: aggregated in
        # plain Python as the step's are, their keys and series kept per model, operation and error type.
        self.llm_tokens = PlainCounter(
            m, "voltorch.llm.tokens", unit="{token}", description="LLM tokens used"
        )
        self.llm_token_usage = h["gen_ai.client.token.usage"]
        self.llm_duration = h["gen_ai.client.operation.duration"]
        self._llm_calls: dict[tuple[str, str, str], _LlmCallSeries] = {}
        # LLM endpoints (their limiters), pulled at collection from observe_llm_endpoints' source.
        self._llm_source: Callable[[], list[Any]] | None = None
        for name, unit, attr, desc in (
            ("voltorch.llm.in_flight", "{call}", "in_flight", "LLM calls in flight per endpoint"),
            ("voltorch.llm.window", "{call}", "window", "Calls the endpoint's limiter lets run at once"),
            ("voltorch.llm.queue_depth", "{call}", "queue_depth", "LLM calls waiting for the window"),
        ):
            m.create_observable_gauge(name, [self._llm_observer(attr)], unit=unit, description=desc)
        m.create_observable_counter(
            "voltorch.llm.throttled",
            [self._llm_observer("throttled")],
            unit="{response}",
            description="429 answers per endpoint",
        )
        m.create_observable_counter(
            "voltorch.llm.throttle_wait",
            [self._llm_observer("throttle_wait")],
            unit="s",
            description="Seconds calls waited because the endpoint throttled them",
        )
        # The system
        self.component_restarts = m.create_counter("voltorch.component.restarts", unit="{restart}")
        self.errors = m.create_counter("voltorch.errors", unit="{error}", description="Recorded errors")
        self.levels = {
            key: m.create_gauge(name, unit="1", description=f"Sum of components' '{key}'")
            for key, name in LEVELS.items()
        }
        self._process = psutil.Process(os.getpid())
        self._process_lock = threading.Lock()
        m.create_observable_gauge(
            "process.memory.usage", [self._memory], unit="By", description="Resident memory"
        )
        m.create_observable_gauge(
            "process.cpu.utilization", [self._cpu], unit="1", description="CPU use since the last collection"
        )
        m.create_observable_counter("process.cpu.time", [self._cpu_time], unit="s")
        m.create_observable_gauge("process.thread.count", [self._threads], unit="{thread}")

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def for_server(cls, config: Any = None) -> Metrics:
        """A private MeterProvider with an in-memory reader (delta counters/histograms, folded by the
        watcher) and, with config.prometheus_port (-1 = any free port), a Prometheus /metrics endpoint."""
        histograms = plain_histograms()
        reader = InMemoryReader(histograms.values(), AggregationTemporality.DELTA)
        readers: list[MetricReader] = [reader.sdk]
        prometheus = None
        port = getattr(config, "prometheus_port", 0) if config is not None else 0
        if port:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()
            readers.append(PrometheusMetricReader(registry=registry))
            for h in histograms.values():
                registry.register(PrometheusHistogram(h))
            prometheus = registry
        provider = MeterProvider(metric_readers=readers, views=_views(), shutdown_on_exit=False)
        out = cls(provider, reader, histograms)
        out._prometheus = prometheus
        if port:
            out.serve_prometheus(getattr(config, "host", "127.0.0.1"), max(port, 0))
        return out

    @classmethod
    def noop(cls) -> Metrics:
        return cls(metrics_api.NoOpMeterProvider())

    def serve_prometheus(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP (port 0 = any free port); returns the port."""
        if self._prometheus is None:
            raise RuntimeError("this Metrics has no Prometheus reader (prometheus_port is 0)")
        from prometheus_client import start_http_server

        httpd, thread = start_http_server(port, addr=host, registry=self._prometheus)
        self._http: tuple[Any, threading.Thread] | None = (httpd, thread)
        self.prometheus_port = httpd.server_port
        return self.prometheus_port

    def shutdown(self) -> None:
        http = getattr(self, "_http", None)
        if http:
            http[0].shutdown()
            http[0].server_close()
            self._http = None
        if isinstance(self.provider, MeterProvider):
            self.provider.shutdown(timeout_millis=5000)

    # -- helpers for components -----------------------------------------------------------------------

    def workflow_finished(self, status: str, duration: float | None = None, **attributes: str) -> None:
        """An execution ended: status "completed", "failed", "timed_out" or "cancelled"."""
        counter = {
            "completed": self.workflows_completed,
            "cancelled": self.workflows_cancelled,
        }.get(status, self.workflows_failed)
        attrs = {"status": status, **attributes}
        counter.add(1, attrs)
        if duration is not None:
            self.workflow_duration.record(duration, attrs)

    def record_usage(self, used: Any, *, template: str) -> None:
        """Usage of one step attempt (a TokenUsage): tokens in and out, cost and model calls (every LLM
        step records it: the counters' keys are kept per template)."""
        keys = self._usage_keys.get(template)
        if keys is None:
            keys = self._usage_keys[template] = (
                series_key({"template": template, GEN_AI_TOKEN_TYPE: "input"}),
                series_key({"template": template, GEN_AI_TOKEN_TYPE: "output"}),
                series_key({"template": template}),
            )
        if used.prompt_tokens:
            self.workflow_tokens.add_at(used.prompt_tokens, keys[0])
        if used.completion_tokens:
            self.workflow_tokens.add_at(used.completion_tokens, keys[1])
        if used.cost:
            self.workflow_cost.add_at(used.cost, keys[2])
        if used.llm_calls:
            self.workflow_llm_calls.add_at(used.llm_calls, keys[2])

    # A workflow step records a step, a coordination and an agent task: their series (and counter keys) are
    # kept by the values they are recorded with, so a record is a dict lookup and the additions, not an
    # attribute dict built and sorted into a key for each instrument.

    def record_step(self, duration: float, status: str, *, kind: str = "") -> None:
        """A step attempt ended ("completed", "failed", "retrying", "skipped", ...) after `duration` s."""
        series = self._steps.get((status, kind))
        if series is None:
            attrs = {"status": status, "kind": kind} if kind else {"status": status}
            series = self._steps[(status, kind)] = self.step_duration.series(attrs)
        series.add(duration)

    def record_coordination(self, duration: float, status: str, *, mode: str = "") -> None:
        kept = self._coordinations.get((status, mode))
        if kept is None:
            attrs = {"status": status, "mode": mode} if mode else {"status": status}
            kept = (series_key(attrs), self.coordination_duration.series(attrs))
            self._coordinations[(status, mode)] = kept
        self.coordinations.add_at(1, kept[0])
        kept[1].add(duration)

    def record_agent_task(self, agent_id: str, duration: float, *, success: bool) -> None:
        """One task run by an agent: success rate = tasks{outcome=success} / tasks; latency histogram."""
        kept = self._agent_tasks.get((agent_id, success))
        if kept is None:
            attrs = {"agent.id": agent_id, "outcome": "success" if success else "failure"}
            kept = (series_key(attrs), self.agent_task_duration.series(attrs))
            self._agent_tasks[(agent_id, success)] = kept
        self.agent_tasks.add_at(1, kept[0])
        kept[1].add(duration)

    def record_llm_call(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        duration: float | None = None,
        *,
        error_type: str = "",
        operation: str = "chat",
    ) -> None:
        """Token counts and latency of one LLM call; also sets gen_ai.usage.* on the current span."""
        kept = self._llm_calls.get((model, operation, error_type))
        if kept is None:
            kept = self._llm_calls[(model, operation, error_type)] = _LlmCallSeries(
                self, model, operation, error_type
            )
        if input_tokens:
            self.llm_tokens.add_at(input_tokens, kept.input_key)
            kept.input.add(input_tokens)
        if output_tokens:
            self.llm_tokens.add_at(output_tokens, kept.output_key)
            kept.output.add(output_tokens)
        if duration is not None:
            kept.duration.add(duration)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(GEN_AI_REQUEST_MODEL, model)
            span.set_attribute(GEN_AI_INPUT_TOKENS, input_tokens)
            span.set_attribute(GEN_AI_OUTPUT_TOKENS, output_tokens)

    def observe_llm_endpoints(self, source: Callable[[], list[Any]]) -> None:
        """Report the LLM endpoints: source() returns their snapshots (agents.limiter.EndpointSnapshot)."""
        self._llm_source = source

    def _llm_observer(self, attr: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            source = self._llm_source
            for snap in source() if source is not None else ():
                yield Observation(
                    getattr(snap, attr), {"llm.endpoint": snap.endpoint, GEN_AI_REQUEST_MODEL: snap.model}
                )

        return observe

    def event_heard(self, event: Any) -> None:
        """The event log's listener (called for every committed event, serialised by the writer lock):
        counts it by domain. The domain of each type is looked up once (a step's six events are of a
        handful of types)."""
        event_type = event.type
        domain = self._domain_of.get(event_type)
        if domain is None:
            domain = self._domain(event_type)
        self._published[domain] = self._published.get(domain, 0) + 1

    def _domain(self, event_type: str) -> str:
        domain = event_type.split(".", 1)[0]
        domain = domain if domain in _DOMAINS else "custom"
        if len(self._domain_of) >= 1024:  # custom types are the publishers' to name: bounded
            self._domain_of.clear()
        self._domain_of[event_type] = domain
        return domain

    def _published_totals(self, _: CallbackOptions) -> Iterable[Observation]:
        for domain, n in list(self._published.items()):
            yield Observation(n, {"event.domain": domain})

    def set_levels(self, values: dict[str, float]) -> None:
        """Set the level gauges from summed details() values (keys of LEVELS)."""
        for key, gauge in self.levels.items():
            gauge.set(values.get(key, 0))

    # -- process (psutil) ---------------------------------------------------------------------------

    def _memory(self, _: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._process.memory_info().rss)

    def _cpu(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._process_lock:
            percent = self._process.cpu_percent(None)
        yield Observation(percent / 100.0)

    def _cpu_time(self, _: CallbackOptions) -> Iterable[Observation]:
        t = self._process.cpu_times()
        yield Observation(t.user, {"cpu.mode": "user"})
        yield Observation(t.system, {"cpu.mode": "system"})

    def _threads(self, _: CallbackOptions) -> Iterable[Observation]:
        yield Observation(threading.active_count())


# -- instruments aggregated in plain Python -------------------------------------------------------

SCOPE = InstrumentationScope("voltorch_server", __version__)


class Series:
    """One attribute set of a PlainHistogram: what was recorded since the readers last took it."""

    __slots__ = ("attributes", "_lock", "_bounds", "count", "sum", "min", "max", "buckets")

    def __init__(self, attributes: Mapping[str, Any], bounds: tuple[float, ...], lock: threading.Lock):
        self.attributes = dict(attributes)
        self._lock = lock
        self._bounds = bounds
        self.count, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf
        self.buckets = [0] * (len(bounds) + 1)

    def add(self, value: float) -> None:
        if not 0 <= value < math.inf:  # the SDK ignores these too
            return
        i = bisect_left(self._bounds, value)  # bucket i holds (bounds[i-1], bounds[i]], as the SDK counts
        with self._lock:
            self.count += 1
            self.sum += value
            self.buckets[i] += 1
            if value < self.min:
                self.min = value
            if value > self.max:
                self.max = value


RpcSeries = Series  # the interceptor's name for the series it keeps per method and code


class _Totals:
    """What one reader has not reported yet (delta) or everything it has seen (cumulative), per series."""

    def __init__(self, temporality: AggregationTemporality):
        self.temporality = temporality
        self.last_ns = time.time_ns()  # a delta point starts where the previous collection ended
        self.series: dict[int, list[Any]] = {}  # id(Series) -> [count, sum, min, max, buckets, start_ns]


class PlainHistogram:
    """A histogram aggregated here instead of by the OpenTelemetry SDK, and merged by this server's readers
    into what they collect as the histogram the SDK would have produced: same name, unit, buckets,
    attributes and temporality.

    Why: the SDK's Histogram.record costs ~9 µs (cleaning and hashing the attributes, a Measurement,
    two locks); `Series.add` is a bisect and a few additions under one lock. Every RPC, workflow step,
    coordination and agent task records one. `record` keeps the Histogram API.
    """

    def __init__(self, name: str, unit: str, description: str, bounds: tuple[float, ...]) -> None:
        self.name, self.unit, self.description, self.bounds = name, unit, description, bounds
        self._lock = threading.Lock()  # guards every series, and the readers' totals
        self._series: dict[tuple, Series] = {}
        self._readers: dict[int, _Totals] = {}

    def series(self, attributes: Mapping[str, Any]) -> Series:
        """The series of an attribute set (callers on a hot path keep it)."""
        key = tuple(sorted(attributes.items()))
        s = self._series.get(key)
        if s is None:
            with self._lock:
                s = self._series.setdefault(key, Series(attributes, self.bounds, self._lock))
        return s

    def record(self, amount: float, attributes: Mapping[str, Any] | None = None, context: Any = None) -> None:
        self.series(attributes or {}).add(amount)

    def add_reader(self, reader: Hashable, temporality: AggregationTemporality) -> None:
        """Register a reader (any object that collects): each keeps its own totals in its temporality."""
        with self._lock:
            self._readers[id(reader)] = _Totals(temporality)

    def merged(self, data: MetricsData | None, reader: Hashable) -> MetricsData | None:
        """`data` (one collection of `reader`) with this histogram added to this server's scope."""
        if data is None or not data.resource_metrics:
            # Nothing to add to (never with Metrics' observable instruments): the points wait.
            return data
        metric = self.collect(reader)
        if metric is None:
            return data
        first, *rest = data.resource_metrics
        scopes = list(first.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope.name == SCOPE.name:
                scopes[i] = replace(sm, metrics=[*sm.metrics, metric])
                break
        else:
            scopes.append(ScopeMetrics(scope=SCOPE, metrics=[metric], schema_url=""))
        return replace(data, resource_metrics=[replace(first, scope_metrics=scopes), *rest])

    def collect(self, reader: Hashable) -> Metric | None:
        """The histogram as `reader` sees it now (None when it has no point to report)."""
        now = time.time_ns()
        with self._lock:
            mine = self._readers.get(id(reader))
            if mine is None:
                return None
            # Whatever was recorded since any reader last collected goes to every reader's totals.
            for s in self._series.values():
                if not s.count:
                    continue
                for totals in self._readers.values():
                    t = totals.series.get(id(s))
                    if t is None:
                        totals.series[id(s)] = [s.count, s.sum, s.min, s.max, list(s.buckets), totals.last_ns]
                    else:
                        t[0] += s.count
                        t[1] += s.sum
                        t[2] = min(t[2], s.min)
                        t[3] = max(t[3], s.max)
                        t[4] = [a + b for a, b in zip(t[4], s.buckets, strict=True)]
                s.count, s.sum, s.min, s.max = 0, 0.0, math.inf, -math.inf
                s.buckets = [0] * len(s.buckets)
            by_id = {id(s): s for s in self._series.values()}
            delta = mine.temporality is AggregationTemporality.DELTA
            points = [
                HistogramDataPoint(
                    attributes=by_id[sid].attributes,
                    start_time_unix_nano=mine.last_ns if delta else start,
                    time_unix_nano=now,
                    count=count,
                    sum=total,
                    bucket_counts=tuple(buckets),
                    explicit_bounds=self.bounds,
                    min=low,
                    max=high,
                )
                for sid, (count, total, low, high, buckets, start) in mine.series.items()
            ]
            if delta:
                mine.series.clear()
                mine.last_ns = now
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=HistogramData(data_points=points, aggregation_temporality=mine.temporality),
        )


class RpcDurations(PlainHistogram):
    """`rpc.server.duration` (ms, by rpc.service, rpc.method and rpc.grpc.status_code)."""

    name = "rpc.server.duration"
    unit = "ms"
    description = "Server RPC latency by method and status code"

    def __init__(self) -> None:
        super().__init__(RpcDurations.name, RpcDurations.unit, RpcDurations.description, _MS_BUCKETS)


def plain_histograms() -> dict[str, PlainHistogram]:
    """The histograms of one server aggregated in plain Python, by name (buckets as `_views` gives the SDK's)."""
    return {
        h.name: h
        for h in (
            RpcDurations(),
            PlainHistogram("voltorch.workflow.duration", "s", "", _S_BUCKETS),
            PlainHistogram(
                "voltorch.workflow.step.duration", "s", "Step run time by status and kind", _S_BUCKETS
            ),
            PlainHistogram("voltorch.coordination.duration", "s", "", _S_BUCKETS),
            PlainHistogram("voltorch.agent.task.duration", "s", "", _S_BUCKETS),
            PlainHistogram("gen_ai.client.token.usage", "{token}", "", _TOKEN_BUCKETS),
            PlainHistogram("gen_ai.client.operation.duration", "s", "", _S_BUCKETS),
        )
    }


def series_key(attributes: Mapping[str, Any] | None) -> tuple:
    """The key of an attribute set in the plain instruments (a caller on a hot path keeps it for
    `add_at` / `set_at`)."""
    return tuple(sorted(attributes.items())) if attributes else ()


class PlainCounter:
    """A counter summed in a dict (a lock and an addition per `add`, against ~9 µs for the SDK's Counter.add)
    and reported by an observable counter at collection, as `voltorch.events.published` is."""

    def __init__(self, meter: metrics_api.Meter, name: str, *, unit: str, description: str = ""):
        self._lock = threading.Lock()
        self._totals: dict[tuple, float] = {}
        meter.create_observable_counter(name, [self._observe], unit=unit, description=description)

    def add(self, amount: float, attributes: Mapping[str, Any] | None = None) -> None:
        self.add_at(amount, series_key(attributes))

    def add_at(self, amount: float, key: tuple) -> None:
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + amount

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = list(self._totals.items())
        return [Observation(n, dict(key)) for key, n in totals]


class _LlmCallSeries:
    """What one model, operation and error type record into (see Metrics.record_llm_call)."""

    __slots__ = ("input_key", "output_key", "input", "output", "duration")

    def __init__(self, metrics: Metrics, model: str, operation: str, error_type: str):
        base = {GEN_AI_REQUEST_MODEL: model, GEN_AI_OPERATION: operation}
        tokens_in, tokens_out = {**base, GEN_AI_TOKEN_TYPE: "input"}, {**base, GEN_AI_TOKEN_TYPE: "output"}
        self.input_key, self.output_key = series_key(tokens_in), series_key(tokens_out)
        self.input = metrics.llm_token_usage.series(tokens_in)
        self.output = metrics.llm_token_usage.series(tokens_out)
        self.duration = metrics.llm_duration.series(
            {**base, "error.type": error_type} if error_type else base
        )


class PlainGauge:
    """A gauge whose last value per attribute set is kept in a dict and reported by an observable gauge."""

    def __init__(self, meter: metrics_api.Meter, name: str, *, unit: str, description: str = ""):
        self._values: dict[tuple, float] = {}
        meter.create_observable_gauge(name, [self._observe], unit=unit, description=description)

    def set(self, value: float, attributes: Mapping[str, Any] | None = None) -> None:
        self._values[series_key(attributes)] = value

    def set_at(self, value: float, key: tuple) -> None:
        self._values[key] = value

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, dict(key)) for key, v in list(self._values.items())]


class InMemoryReader:
    """The server's in-memory reader: `sdk` (an InMemoryMetricReader, given to the MeterProvider) collects
    the SDK's instruments; `get_metrics_data()` returns its collection with the plain histograms merged in,
    through the readers' public API only."""

    def __init__(
        self, histograms: PlainHistogram | Iterable[PlainHistogram], temporality: AggregationTemporality
    ):
        self.sdk = InMemoryMetricReader(preferred_temporality={Counter: temporality, Histogram: temporality})
        self._histograms = [histograms] if isinstance(histograms, PlainHistogram) else list(histograms)
        for h in self._histograms:
            h.add_reader(self, temporality)

    def get_metrics_data(self) -> MetricsData | None:
        data = self.sdk.get_metrics_data()
        for h in self._histograms:
            data = h.merged(data, self)
        return data


_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


_PROMETHEUS_UNITS = {"ms": "milliseconds", "s": "seconds"}  # as the exporter names these units


class PrometheusHistogram:
    """A plain histogram on a Prometheus registry, beside the OpenTelemetry exporter's reader: a
    prometheus_client collector (its public protocol) writing the cumulative histogram as that exporter
    writes the SDK's (name and unit suffix, scope labels, sanitized attribute labels, cumulative buckets)."""

    def __init__(self, histogram: PlainHistogram):
        self._durations = histogram
        histogram.add_reader(self, AggregationTemporality.CUMULATIVE)

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration: the family's name is known to be unique

    def collect(self) -> list[Any]:
        from prometheus_client.core import HistogramMetricFamily

        metric = self._durations.collect(self)
        if metric is None:
            return []
        scope = {
            "otel_scope_name": SCOPE.name,
            "otel_scope_version": SCOPE.version or "",
            "otel_scope_schema_url": SCOPE.schema_url or "",
        }
        points = [p for p in metric.data.data_points if isinstance(p, HistogramDataPoint)]
        rows = [
            ({**scope, **{_INVALID_LABEL.sub("_", k): _label(v) for k, v in (p.attributes or {}).items()}}, p)
            for p in points
        ]
        keys = sorted({k for labels, _ in rows for k in labels})
        name = _INVALID_LABEL.sub("_", metric.name)
        unit = _PROMETHEUS_UNITS.get(metric.unit or "", "")
        family = HistogramMetricFamily(name, metric.description or "", labels=keys, unit=unit)
        for labels, p in rows:
            bounds = [f"{b}" for b in p.explicit_bounds] + ["+Inf"]
            family.add_metric(
                [labels.get(k, "") for k in keys],
                buckets=list(zip(bounds, accumulate(p.bucket_counts), strict=True)),
                sum_value=p.sum,
            )
        return [family]


PrometheusRpcDurations = PrometheusHistogram


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


NOOP = Metrics.noop()
