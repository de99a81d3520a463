import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from voltorch.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATUS_UNSPECIFIED: _ClassVar[HealthStatus]
    HEALTH_STATUS_HEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_DEGRADED: _ClassVar[HealthStatus]
    HEALTH_STATUS_UNHEALTHY: _ClassVar[HealthStatus]

class MetricKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_KIND_UNSPECIFIED: _ClassVar[MetricKind]
    METRIC_KIND_GAUGE: _ClassVar[MetricKind]
    METRIC_KIND_COUNTER: _ClassVar[MetricKind]
    METRIC_KIND_HISTOGRAM: _ClassVar[MetricKind]
HEALTH_STATUS_UNSPECIFIED: HealthStatus
HEALTH_STATUS_HEALTHY: HealthStatus
HEALTH_STATUS_DEGRADED: HealthStatus
HEALTH_STATUS_UNHEALTHY: HealthStatus
METRIC_KIND_UNSPECIFIED: MetricKind
METRIC_KIND_GAUGE: MetricKind
METRIC_KIND_COUNTER: MetricKind
METRIC_KIND_HISTOGRAM: MetricKind

class ErrorRecord(_message.Message):
    __slots__ = ("id", "component", "code", "message", "trace_id", "span_id", "correlation_id", "time", "details")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    id: str
    component: str
    code: str
    message: str
    trace_id: str
    span_id: str
    correlation_id: str
    time: _timestamp_pb2.Timestamp
    details: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., component: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ComponentHealth(_message.Message):
    __slots__ = ("name", "status", "enabled", "message", "last_check_time", "check_latency", "error_count", "restart_count", "consecutive_failures", "last_error", "start_time", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECK_TIME_FIELD_NUMBER: _ClassVar[int]
    CHECK_LATENCY_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: HealthStatus
    enabled: bool
    message: str
    last_check_time: _timestamp_pb2.Timestamp
    check_latency: _duration_pb2.Duration
    error_count: int
    restart_count: int
    consecutive_failures: int
    last_error: ErrorRecord
    start_time: _timestamp_pb2.Timestamp
    details: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[HealthStatus, str]] = ..., enabled: _Optional[bool] = ..., message: _Optional[str] = ..., last_check_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., check_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error_count: _Optional[int] = ..., restart_count: _Optional[int] = ..., consecutive_failures: _Optional[int] = ..., last_error: _Optional[_Union[ErrorRecord, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ("refresh",)
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    refresh: bool
    def __init__(self, refresh: _Optional[bool] = ...) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("status", "components", "uptime", "version", "start_time", "active_workflows", "queued_workflows", "registered_agents", "connected_workers", "error_count", "last_error", "members", "replica_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    status: HealthStatus
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    uptime: _duration_pb2.Duration
    version: str
    start_time: _timestamp_pb2.Timestamp
    active_workflows: int
    queued_workflows: int
    registered_agents: int
    connected_workers: int
    error_count: int
    last_error: ErrorRecord
    members: _containers.RepeatedCompositeFieldContainer[Member]
    replica_id: str
    def __init__(self, status: _Optional[_Union[HealthStatus, str]] = ..., components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_workflows: _Optional[int] = ..., queued_workflows: _Optional[int] = ..., registered_agents: _Optional[int] = ..., connected_workers: _Optional[int] = ..., error_count: _Optional[int] = ..., last_error: _Optional[_Union[ErrorRecord, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., replica_id: _Optional[str] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "address", "version", "start_time", "last_heartbeat", "alive", "running_executions", "connected_workers", "local")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    version: str
    start_time: _timestamp_pb2.Timestamp
    last_heartbeat: _timestamp_pb2.Timestamp
    alive: bool
    running_executions: int
    connected_workers: int
    local: bool
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., alive: _Optional[bool] = ..., running_executions: _Optional[int] = ..., connected_workers: _Optional[int] = ..., local: _Optional[bool] = ...) -> None: ...

class ListComponentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListComponentsResponse(_message.Message):
    __slots__ = ("components",)
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    def __init__(self, components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ...) -> None: ...

class RestartComponentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RestartComponentResponse(_message.Message):
    __slots__ = ("component",)
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    component: ComponentHealth
    def __init__(self, component: _Optional[_Union[ComponentHealth, _Mapping]] = ...) -> None: ...

class HistogramSummary(_message.Message):
    __slots__ = ("count", "sum", "min", "max", "p50", "p95", "p99")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    count: int
    sum: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    def __init__(self, count: _Optional[int] = ..., sum: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., p50: _Optional[float] = ..., p95: _Optional[float] = ..., p99: _Optional[float] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("name", "description", "unit", "kind", "attributes", "value", "histogram", "time")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    unit: str
    kind: MetricKind
    attributes: _containers.ScalarMap[str, str]
    value: float
    histogram: HistogramSummary
    time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., unit: _Optional[str] = ..., kind: _Optional[_Union[MetricKind, str]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ..., histogram: _Optional[_Union[HistogramSummary, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MetricSample(_message.Message):
    __slots__ = ("time", "value", "histogram")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    value: float
    histogram: HistogramSummary
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., histogram: _Optional[_Union[HistogramSummary, _Mapping]] = ...) -> None: ...

class MetricSeries(_message.Message):
    __slots__ = ("name", "attributes", "samples")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    attributes: _containers.ScalarMap[str, str]
    samples: _containers.RepeatedCompositeFieldContainer[MetricSample]
    def __init__(self, name: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., samples: _Optional[_Iterable[_Union[MetricSample, _Mapping]]] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ("names", "include_history", "since")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    include_history: bool
    since: _timestamp_pb2.Timestamp
    def __init__(self, names: _Optional[_Iterable[str]] = ..., include_history: _Optional[bool] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetMetricsResponse(_message.Message):
    __slots__ = ("metrics", "history", "collect_time", "collection_interval", "retention")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    COLLECT_TIME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricValue]
    history: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    collect_time: _timestamp_pb2.Timestamp
    collection_interval: _duration_pb2.Duration
    retention: _duration_pb2.Duration
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ..., collect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., collection_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retention: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListErrorsRequest(_message.Message):
    __slots__ = ("trace_id", "correlation_id", "component", "code", "since", "page_size", "page_token")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    correlation_id: str
    component: str
    code: str
    since: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, trace_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., component: _Optional[str] = ..., code: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListErrorsResponse(_message.Message):
    __slots__ = ("errors", "next_page_token")
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[ErrorRecord]
    next_page_token: str
    def __init__(self, errors: _Optional[_Iterable[_Union[ErrorRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTraceRequest(_message.Message):
    __slots__ = ("trace_id", "correlation_id", "max_entries")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    correlation_id: str
    max_entries: int
    def __init__(self, trace_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., max_entries: _Optional[int] = ...) -> None: ...

class TraceEntry(_message.Message):
    __slots__ = ("event", "error")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.Event
    error: ErrorRecord
    def __init__(self, event: _Optional[_Union[_events_pb2.Event, _Mapping]] = ..., error: _Optional[_Union[ErrorRecord, _Mapping]] = ...) -> None: ...

class GetTraceResponse(_message.Message):
    __slots__ = ("entries", "trace_ids", "correlation_ids", "components", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRACE_IDS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TraceEntry]
    trace_ids: _containers.RepeatedScalarFieldContainer[str]
    correlation_ids: _containers.RepeatedScalarFieldContainer[str]
    components: _containers.RepeatedScalarFieldContainer[str]
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[TraceEntry, _Mapping]]] = ..., trace_ids: _Optional[_Iterable[str]] = ..., correlation_ids: _Optional[_Iterable[str]] = ..., components: _Optional[_Iterable[str]] = ..., truncated: _Optional[bool] = ...) -> None: ...
