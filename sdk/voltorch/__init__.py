"""voltorch: the Python SDK for the voltorch orchestration server."""

from ._client import TLS, Client
from ._coordination import (
    Agent,
    AgentResult,
    AgentSelection,
    Condition,
    Coordination,
    LlmSettings,
    SelectionCandidate,
    TaskError,
    TokenUsage,
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
from ._priority import Priority
from ._state import (
    Change,
    Exists,
    KeyValue,
    Put,
    Remove,
    SetResult,
    SnapshotInfo,
    TransactionResult,
    ValueIs,
    VersionIs,
)
from ._workflows import (
    AgentTask,
    ConditionStep,
    CoordinationStep,
    Execution,
    FanOut,
    ParameterSpec,
    RetryPolicy,
    StartResult,
    Step,
    StepExecution,
    WorkflowEvent,
    WorkflowTemplate,
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
from .worker import TaskFailed, Worker, WorkerTask

__version__ = "0.1.0"

__all__ = [
    "TLS",
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
    "Worker",
    "WorkerTask",
]

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
