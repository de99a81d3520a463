"""The system view: the watcher (health, metrics), the error log, the trace timeline and the storage
component (the database file's health)."""

from ._errors_log import ErrorLog, ErrorRecord
from ._metric_history import MAX_SAMPLES_PER_SERIES, MetricHistory
from ._metrics import COUNTER, HISTOGRAM, HistogramSummary, MetricCollector, MetricKind, MetricPoint, Sample
from ._storage import Storage
from ._store_port import SystemPort
from ._timeline import timeline
from ._watcher import ComponentHealth, HealthStatus, Watcher

__all__ = [
    "COUNTER",
    "HISTOGRAM",
    "MAX_SAMPLES_PER_SERIES",
    "ComponentHealth",
    "ErrorLog",
    "ErrorRecord",
    "HealthStatus",
    "HistogramSummary",
    "MetricCollector",
    "MetricHistory",
    "MetricKind",
    "MetricPoint",
    "Sample",
    "Storage",
    "SystemPort",
    "Watcher",
    "timeline",
]
