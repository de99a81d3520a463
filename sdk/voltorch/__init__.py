"""voltorch: the Python SDK for the voltorch orchestration server."""

from ._client import DEFAULT_TARGET, TLS, Client
from ._coordination import (
    Agent,
    AgentResult,
    AgentSelection,
    Coordination,
    SelectionCandidate,
)
from ._events import (
    Correlation,
    CorrelationNode,
    Event,
    EventHeartbeat,
    EventPage,
    NewEvent,
    PublishResult,
    Subscription,
)
from ._orchestrator import (
    ComponentHealth,
    ErrorRecord,
    Health,
    HistogramSummary,
    Metric,
    Metrics,
    MetricSample,
    MetricSeries,
    Trace,
)
from ._state import (
    Change,
    Exists,
    KeyValue,
    Put,
    Remove,
    SetResult,
    SnapshotInfo,
    StateClient,
    TransactionResult,
    ValueIs,
    VersionIs,
)
from ._tracing import TraceContextInterceptor
from ._version import __version__
from ._workflows import (
    Execution,
    StartResult,
    StepExecution,
    WorkflowEvent,
)
from .errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    ResourceExhaustedError,
    UnavailableError,
    VoltorchError,
)
from .wire import (
    AgentTask,
    Budget,
    Condition,
    ConditionStep,
    CoordinationStep,
    FanOut,
    LlmSettings,
    ParameterSpec,
    Priority,
    RetryPolicy,
    Step,
    TaskError,
    TokenUsage,
    ToolSpec,
    WorkflowTemplate,
)
from .worker import TaskFailed, Worker, WorkerTask

__all__ = [
    "DEFAULT_TARGET",
    "TLS",
    "__version__",
    "AlreadyExistsError",
    "Change",
    "Client",
    "ConflictError",
    "Correlation",
    "CorrelationNode",
    "Event",
    "EventHeartbeat",
    "EventPage",
    "Exists",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "KeyValue",
    "NewEvent",
    "NotFoundError",
    "OutOfRangeError",
    "Priority",
    "PublishResult",
    "Put",
    "Remove",
    "ResourceExhaustedError",
    "SetResult",
    "SnapshotInfo",
    "Subscription",
    "TransactionResult",
    "UnavailableError",
    "ValueIs",
    "VersionIs",
    "VoltorchError",
]
__all__ += [  # workflows
    "AgentTask",
    "Budget",
    "Condition",
    "ConditionStep",
    "CoordinationStep",
    "Execution",
    "FanOut",
    "ParameterSpec",
    "RetryPolicy",
    "StartResult",
    "Step",
    "StepExecution",
    "TaskError",
    "WorkflowEvent",
    "WorkflowTemplate",
]
__all__ += [  # coordination and workers
    "Agent",
    "AgentResult",
    "AgentSelection",
    "Coordination",
    "LlmSettings",
    "SelectionCandidate",
    "TaskFailed",
    "TokenUsage",
    "ToolSpec",
    "Worker",
    "WorkerTask",
]

__all__ += ["StateClient", "TraceContextInterceptor"]  # for channels and clients built by hand
__all__ += [  # the system: health, metrics, errors, traces
    "ComponentHealth",
    "ErrorRecord",
    "Health",
    "HistogramSummary",
    "Metric",
    "MetricSample",
    "MetricSeries",
    "Metrics",
    "Trace",
]
