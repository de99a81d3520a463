"""Folding OpenTelemetry metric data into current values and per-interval samples.

The server's in-memory reader reports counters and histograms as *deltas*; this collector adds them
up into totals (the current value GetMetrics shows) and, separately, into the running interval, so the
history gets one histogram summary per collection interval (count, sum, min, max, p50/p95/p99
interpolated from the buckets) while counters are sampled as their running total.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)


class MetricsSource(Protocol):
    """What the collector reads: an InMemoryMetricReader, or the server's reader wrapping one."""

    def get_metrics_data(self) -> MetricsData | None: ...


class MetricKind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


GAUGE, COUNTER, HISTOGRAM = MetricKind.GAUGE, MetricKind.COUNTER, MetricKind.HISTOGRAM

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class HistogramSummary:
    count: int = 0
    sum: float = 0.0
    min: float = 0.0
    max: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("count", "sum", "min", "max", "p50", "p95", "p99")}


@dataclass(frozen=True)
class MetricPoint:
    """The current value of one metric for one attribute set."""

    name: str
    description: str
    unit: str
    kind: MetricKind
    attributes: dict[str, str]
    value: float  # gauge level, counter total, histogram count
    histogram: HistogramSummary | None
    time: float


@dataclass(frozen=True)
class Sample:
    name: str
    attributes: dict[str, str]
    time: float
    value: float
    histogram: HistogramSummary | None = None


@dataclass
class _Hist:
    bounds: tuple[float, ...] = ()
    counts: list[int] = field(default_factory=list)
    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")

    def add(self, p: Any) -> None:
        bounds = tuple(p.explicit_bounds)
        if bounds != self.bounds or len(self.counts) != len(p.bucket_counts):
            self.bounds, self.counts = bounds, [0] * len(p.bucket_counts)
        for i, c in enumerate(p.bucket_counts):
            self.counts[i] += c
        self.count += p.count
        self.sum += p.sum
        if p.count:
            self.min = min(self.min, p.min)
            self.max = max(self.max, p.max)

    def summary(self) -> HistogramSummary:
        if not self.count:
            return HistogramSummary()
        return HistogramSummary(
            count=self.count,
            sum=self.sum,
            min=self.min,
            max=self.max,
            p50=self.quantile(0.50),
            p95=self.quantile(0.95),
            p99=self.quantile(0.99),
        )

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket holding the q-th value, clamped to [min, max]."""
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                lo = self.bounds[i - 1] if i > 0 else self.min
                hi = self.bounds[i] if i < len(self.bounds) else self.max
                lo, hi = max(lo, self.min), min(hi, self.max)
                return lo + (hi - lo) * ((rank - seen) / c)
            seen += c
        return self.max


def _attrs(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}


def _key(name: str, attrs: dict[str, str]) -> Key:
    return name, tuple(sorted(attrs.items()))


class MetricCollector:
    """Reads the server's in-memory reader; thread-safe. `collect()` for now, `take_interval()` per interval."""

    def __init__(self, reader: MetricsSource | None):
        self._reader = reader
        self._lock = threading.Lock()
        self._meta: dict[str, tuple[str, str, MetricKind]] = {}  # name -> (description, unit, kind)
        self._values: dict[Key, float] = {}  # gauges and counters
        self._totals: dict[Key, _Hist] = {}  # histograms since start
        self._interval: dict[Key, _Hist] = {}  # histograms since the last take_interval()
        self._attrs: dict[Key, dict[str, str]] = {}

    def _fold(self) -> None:
        if self._reader is None:
            return
        data = self._reader.get_metrics_data()
        if data is None:
            return
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    self._fold_metric(metric)

    def _fold_metric(self, metric: Any) -> None:
        d = metric.data
        if isinstance(d, Histogram):
            kind = HISTOGRAM
        elif isinstance(d, Sum) and d.is_monotonic:
            kind = COUNTER
        elif isinstance(d, Sum | Gauge):
            kind = GAUGE
        else:
            return
        self._meta[metric.name] = (metric.description or "", metric.unit or "", kind)
        delta = getattr(d, "aggregation_temporality", None) == AggregationTemporality.DELTA
        for p in d.data_points:
            attrs = _attrs(p.attributes)
            key = _key(metric.name, attrs)
            self._attrs[key] = attrs
            if kind == HISTOGRAM:
                if not delta:  # a cumulative histogram replaces the totals
                    self._totals[key] = _Hist()
                self._totals.setdefault(key, _Hist()).add(p)
                self._interval.setdefault(key, _Hist()).add(p)
            elif kind == COUNTER and delta:
                self._values[key] = self._values.get(key, 0.0) + p.value
            else:
                self._values[key] = float(p.value)

    def collect(self) -> list[MetricPoint]:
        """Every metric's current value (counters: total since start; histograms: summary since start)."""
        now = time.time()
        with self._lock:
            self._fold()
            out = []
            for key, value in self._values.items():
                desc, unit, kind = self._meta[key[0]]
                out.append(MetricPoint(key[0], desc, unit, kind, self._attrs[key], value, None, now))
            for key, hist in self._totals.items():
                desc, unit, _ = self._meta[key[0]]
                out.append(
                    MetricPoint(
                        key[0], desc, unit, HISTOGRAM, self._attrs[key], hist.count, hist.summary(), now
                    )
                )
        out.sort(key=lambda p: (p.name, sorted(p.attributes.items())))
        return out

    def take_interval(self) -> tuple[list[MetricPoint], list[Sample]]:
        """Current points plus one sample per series for the interval that ends now (histograms: that
        interval's summary, zero when idle), and start a new interval."""
        points = self.collect()
        with self._lock:
            interval, self._interval = self._interval, {}
        samples = []
        for p in points:
            if p.kind == HISTOGRAM:
                h = interval.get(_key(p.name, p.attributes))
                summary = h.summary() if h else HistogramSummary()
                samples.append(Sample(p.name, p.attributes, p.time, summary.count, summary))
            else:
                samples.append(Sample(p.name, p.attributes, p.time, p.value))
        return points, samples
