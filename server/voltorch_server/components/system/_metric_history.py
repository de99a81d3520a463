"""Metric history in the database: one row per series per collection interval, kept for the retention window.

Persisted so GetMetrics can show how the system behaved before a restart. A long history is thinned
evenly (every k-th sample, the newest always kept) to at most MAX_SAMPLES_PER_SERIES per series, so a
response stays well under the gRPC message limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._metrics import HistogramSummary, Sample
from ._store_port import SystemPort

MAX_SAMPLES_PER_SERIES = 720


@dataclass(frozen=True)
class Series:
    name: str
    attributes: dict[str, str]
    samples: list[Sample]


class MetricHistory:
    def __init__(self, store: SystemPort, retention_seconds: float):
        self.store = store
        self.retention = retention_seconds

    def record(self, samples: Sequence[Sample], now: float) -> None:
        """Append one interval's samples and drop those older than the retention, in one transaction."""
        rows = [
            (
                s.name,
                json.dumps(s.attributes, sort_keys=True, separators=(",", ":")),
                s.time,
                s.value,
                json.dumps(s.histogram.as_dict()) if s.histogram is not None else None,
            )
            for s in samples
        ]
        self.store.record_samples(rows, now - self.retention if self.retention > 0 else None)

    def query(self, wanted: Callable[[str], bool], since: float | None = None) -> list[Series]:
        """Series whose name `wanted` accepts, oldest sample first, from `since` (None = oldest retained)."""
        rows = self.store.samples(since if since is not None else 0.0)
        grouped: dict[tuple[str, str], list[Sample]] = {}
        for r in rows:
            if not wanted(r["name"]):
                continue
            attrs = json.loads(r["attributes"])
            hist = HistogramSummary(**json.loads(r["histogram"])) if r["histogram"] else None
            grouped.setdefault((r["name"], r["attributes"]), []).append(
                Sample(r["name"], attrs, r["time"], r["value"], hist)
            )
        return [Series(name, json.loads(attrs), _thin(samples)) for (name, attrs), samples in grouped.items()]


def _thin(samples: list[Sample]) -> list[Sample]:
    if len(samples) <= MAX_SAMPLES_PER_SERIES:
        return samples
    step = -(-len(samples) // MAX_SAMPLES_PER_SERIES)  # ceil
    kept = samples[::-1][::step][::-1]  # every step-th, counted back from the newest
    return kept
