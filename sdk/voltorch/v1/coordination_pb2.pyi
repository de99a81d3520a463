import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from voltorch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_KIND_UNSPECIFIED: _ClassVar[AgentKind]
    AGENT_KIND_LLM: _ClassVar[AgentKind]
    AGENT_KIND_OFFLINE: _ClassVar[AgentKind]
    AGENT_KIND_REMOTE: _ClassVar[AgentKind]
    AGENT_KIND_FUNCTION: _ClassVar[AgentKind]

class AgentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATUS_UNSPECIFIED: _ClassVar[AgentStatus]
    AGENT_STATUS_IDLE: _ClassVar[AgentStatus]
    AGENT_STATUS_BUSY: _ClassVar[AgentStatus]
    AGENT_STATUS_OFFLINE: _ClassVar[AgentStatus]
    AGENT_STATUS_ERROR: _ClassVar[AgentStatus]

class CapabilityUpdateMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPABILITY_UPDATE_MODE_UNSPECIFIED: _ClassVar[CapabilityUpdateMode]
    CAPABILITY_UPDATE_MODE_REPLACE: _ClassVar[CapabilityUpdateMode]
    CAPABILITY_UPDATE_MODE_ADD: _ClassVar[CapabilityUpdateMode]
    CAPABILITY_UPDATE_MODE_REMOVE: _ClassVar[CapabilityUpdateMode]

class CoordinationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COORDINATION_MODE_UNSPECIFIED: _ClassVar[CoordinationMode]
    COORDINATION_MODE_SEQUENTIAL: _ClassVar[CoordinationMode]
    COORDINATION_MODE_PARALLEL: _ClassVar[CoordinationMode]
    COORDINATION_MODE_CONDITIONAL: _ClassVar[CoordinationMode]
    COORDINATION_MODE_PIPELINE: _ClassVar[CoordinationMode]

class CoordinationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COORDINATION_STATUS_UNSPECIFIED: _ClassVar[CoordinationStatus]
    COORDINATION_STATUS_QUEUED: _ClassVar[CoordinationStatus]
    COORDINATION_STATUS_RUNNING: _ClassVar[CoordinationStatus]
    COORDINATION_STATUS_COMPLETED: _ClassVar[CoordinationStatus]
    COORDINATION_STATUS_FAILED: _ClassVar[CoordinationStatus]
    COORDINATION_STATUS_CANCELLED: _ClassVar[CoordinationStatus]
    COORDINATION_STATUS_TIMED_OUT: _ClassVar[CoordinationStatus]
AGENT_KIND_UNSPECIFIED: AgentKind
AGENT_KIND_LLM: AgentKind
AGENT_KIND_OFFLINE: AgentKind
AGENT_KIND_REMOTE: AgentKind
AGENT_KIND_FUNCTION: AgentKind
AGENT_STATUS_UNSPECIFIED: AgentStatus
AGENT_STATUS_IDLE: AgentStatus
AGENT_STATUS_BUSY: AgentStatus
AGENT_STATUS_OFFLINE: AgentStatus
AGENT_STATUS_ERROR: AgentStatus
CAPABILITY_UPDATE_MODE_UNSPECIFIED: CapabilityUpdateMode
CAPABILITY_UPDATE_MODE_REPLACE: CapabilityUpdateMode
CAPABILITY_UPDATE_MODE_ADD: CapabilityUpdateMode
CAPABILITY_UPDATE_MODE_REMOVE: CapabilityUpdateMode
COORDINATION_MODE_UNSPECIFIED: CoordinationMode
COORDINATION_MODE_SEQUENTIAL: CoordinationMode
COORDINATION_MODE_PARALLEL: CoordinationMode
COORDINATION_MODE_CONDITIONAL: CoordinationMode
COORDINATION_MODE_PIPELINE: CoordinationMode
COORDINATION_STATUS_UNSPECIFIED: CoordinationStatus
COORDINATION_STATUS_QUEUED: CoordinationStatus
COORDINATION_STATUS_RUNNING: CoordinationStatus
COORDINATION_STATUS_COMPLETED: CoordinationStatus
COORDINATION_STATUS_FAILED: CoordinationStatus
COORDINATION_STATUS_CANCELLED: CoordinationStatus
COORDINATION_STATUS_TIMED_OUT: CoordinationStatus

class LlmSettings(_message.Message):
    __slots__ = ("model", "base_url", "api_key_env", "system_prompt", "temperature", "timeout", "max_tokens", "tools", "max_tool_iterations")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOOL_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    base_url: str
    api_key_env: str
    system_prompt: str
    temperature: float
    timeout: _duration_pb2.Duration
    max_tokens: int
    tools: _containers.RepeatedScalarFieldContainer[str]
    max_tool_iterations: int
    def __init__(self, model: _Optional[str] = ..., base_url: _Optional[str] = ..., api_key_env: _Optional[str] = ..., system_prompt: _Optional[str] = ..., temperature: _Optional[float] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_tokens: _Optional[int] = ..., tools: _Optional[_Iterable[str]] = ..., max_tool_iterations: _Optional[int] = ...) -> None: ...

class ToolSpec(_message.Message):
    __slots__ = ("name", "description", "parameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("id", "name", "kind", "capabilities", "max_concurrency", "status", "current_load", "success_rate", "error_rate", "avg_latency", "tasks_completed", "tasks_failed", "llm", "labels", "register_time", "last_seen_time", "last_error", "tools")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LOAD_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_FIELD_NUMBER: _ClassVar[int]
    TASKS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REGISTER_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    kind: AgentKind
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    status: AgentStatus
    current_load: int
    success_rate: float
    error_rate: float
    avg_latency: _duration_pb2.Duration
    tasks_completed: int
    tasks_failed: int
    llm: LlmSettings
    labels: _containers.ScalarMap[str, str]
    register_time: _timestamp_pb2.Timestamp
    last_seen_time: _timestamp_pb2.Timestamp
    last_error: TaskError
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[AgentKind, str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., current_load: _Optional[int] = ..., success_rate: _Optional[float] = ..., error_rate: _Optional[float] = ..., avg_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tasks_completed: _Optional[int] = ..., tasks_failed: _Optional[int] = ..., llm: _Optional[_Union[LlmSettings, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., register_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[_Union[TaskError, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ...) -> None: ...

class RegisterAgentRequest(_message.Message):
    __slots__ = ("agent_id", "name", "kind", "capabilities", "max_concurrency", "llm", "labels", "replace", "tools")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    kind: AgentKind
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    llm: LlmSettings
    labels: _containers.ScalarMap[str, str]
    replace: bool
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[AgentKind, str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., llm: _Optional[_Union[LlmSettings, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., replace: _Optional[bool] = ..., tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class UnregisterAgentRequest(_message.Message):
    __slots__ = ("agent_id", "force")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    force: bool
    def __init__(self, agent_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class UnregisterAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class UpdateCapabilitiesRequest(_message.Message):
    __slots__ = ("agent_id", "capabilities", "mode")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    mode: CapabilityUpdateMode
    def __init__(self, agent_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[CapabilityUpdateMode, str]] = ...) -> None: ...

class UpdateCapabilitiesResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class GetAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("capabilities", "status", "kind", "page_size", "page_token")
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    status: AgentStatus
    kind: AgentKind
    page_size: int
    page_token: str
    def __init__(self, capabilities: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., kind: _Optional[_Union[AgentKind, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CoordinationCondition(_message.Message):
    __slots__ = ("contains", "regex", "json_field_equals", "negate")
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_EQUALS_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    contains: str
    regex: str
    json_field_equals: JsonFieldEquals
    negate: bool
    def __init__(self, contains: _Optional[str] = ..., regex: _Optional[str] = ..., json_field_equals: _Optional[_Union[JsonFieldEquals, _Mapping]] = ..., negate: _Optional[bool] = ...) -> None: ...

class JsonFieldEquals(_message.Message):
    __slots__ = ("path", "value")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    path: str
    value: _struct_pb2.Value
    def __init__(self, path: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class RequestCoordinationRequest(_message.Message):
    __slots__ = ("request_id", "source_agent_id", "target_agent_id", "agent_ids", "required_capabilities", "mode", "task", "context", "priority", "timeout", "condition", "correlation_id", "max_agents")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_AGENTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    source_agent_id: str
    target_agent_id: str
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    mode: CoordinationMode
    task: str
    context: _struct_pb2.Struct
    priority: _common_pb2.Priority
    timeout: _duration_pb2.Duration
    condition: CoordinationCondition
    correlation_id: str
    max_agents: int
    def __init__(self, request_id: _Optional[str] = ..., source_agent_id: _Optional[str] = ..., target_agent_id: _Optional[str] = ..., agent_ids: _Optional[_Iterable[str]] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[CoordinationMode, str]] = ..., task: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., condition: _Optional[_Union[CoordinationCondition, _Mapping]] = ..., correlation_id: _Optional[str] = ..., max_agents: _Optional[int] = ...) -> None: ...

class RequestCoordinationResponse(_message.Message):
    __slots__ = ("coordination", "existing")
    COORDINATION_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    coordination: Coordination
    existing: bool
    def __init__(self, coordination: _Optional[_Union[Coordination, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("code", "message", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class TokenUsage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "cost", "llm_calls")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    LLM_CALLS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    llm_calls: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cost: _Optional[float] = ..., llm_calls: _Optional[int] = ...) -> None: ...

class AgentResult(_message.Message):
    __slots__ = ("agent_id", "position", "task_id", "attempts", "output", "structured_output", "error", "latency", "usage", "skipped", "condition_result", "start_time", "end_time")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CONDITION_RESULT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    position: int
    task_id: str
    attempts: int
    output: str
    structured_output: _struct_pb2.Value
    error: TaskError
    latency: _duration_pb2.Duration
    usage: TokenUsage
    skipped: bool
    condition_result: bool
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, agent_id: _Optional[str] = ..., position: _Optional[int] = ..., task_id: _Optional[str] = ..., attempts: _Optional[int] = ..., output: _Optional[str] = ..., structured_output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., skipped: _Optional[bool] = ..., condition_result: _Optional[bool] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SelectionCandidate(_message.Message):
    __slots__ = ("agent_id", "score", "success_rate", "avg_latency", "current_load", "max_concurrency", "eligible", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LOAD_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    score: float
    success_rate: float
    avg_latency: _duration_pb2.Duration
    current_load: int
    max_concurrency: int
    eligible: bool
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., score: _Optional[float] = ..., success_rate: _Optional[float] = ..., avg_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., current_load: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., eligible: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentSelection(_message.Message):
    __slots__ = ("selected_agent_ids", "candidates", "explanation")
    SELECTED_AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    selected_agent_ids: _containers.RepeatedScalarFieldContainer[str]
    candidates: _containers.RepeatedCompositeFieldContainer[SelectionCandidate]
    explanation: str
    def __init__(self, selected_agent_ids: _Optional[_Iterable[str]] = ..., candidates: _Optional[_Iterable[_Union[SelectionCandidate, _Mapping]]] = ..., explanation: _Optional[str] = ...) -> None: ...

class Coordination(_message.Message):
    __slots__ = ("id", "request_id", "mode", "status", "source_agent_id", "target_agent_id", "agent_ids", "required_capabilities", "task", "context", "priority", "timeout", "condition", "correlation_id", "trace_id", "results", "output", "structured_output", "error", "selection", "queue_position", "create_time", "start_time", "end_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    mode: CoordinationMode
    status: CoordinationStatus
    source_agent_id: str
    target_agent_id: str
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    task: str
    context: _struct_pb2.Struct
    priority: _common_pb2.Priority
    timeout: _duration_pb2.Duration
    condition: CoordinationCondition
    correlation_id: str
    trace_id: str
    results: _containers.RepeatedCompositeFieldContainer[AgentResult]
    output: str
    structured_output: _struct_pb2.Value
    error: TaskError
    selection: AgentSelection
    queue_position: int
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ..., mode: _Optional[_Union[CoordinationMode, str]] = ..., status: _Optional[_Union[CoordinationStatus, str]] = ..., source_agent_id: _Optional[str] = ..., target_agent_id: _Optional[str] = ..., agent_ids: _Optional[_Iterable[str]] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., task: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., condition: _Optional[_Union[CoordinationCondition, _Mapping]] = ..., correlation_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[AgentResult, _Mapping]]] = ..., output: _Optional[str] = ..., structured_output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., selection: _Optional[_Union[AgentSelection, _Mapping]] = ..., queue_position: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCoordinationRequest(_message.Message):
    __slots__ = ("coordination_id", "wait_timeout")
    COORDINATION_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    coordination_id: str
    wait_timeout: _duration_pb2.Duration
    def __init__(self, coordination_id: _Optional[str] = ..., wait_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetCoordinationResponse(_message.Message):
    __slots__ = ("coordination",)
    COORDINATION_FIELD_NUMBER: _ClassVar[int]
    coordination: Coordination
    def __init__(self, coordination: _Optional[_Union[Coordination, _Mapping]] = ...) -> None: ...

class CancelCoordinationRequest(_message.Message):
    __slots__ = ("coordination_id", "reason")
    COORDINATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    coordination_id: str
    reason: str
    def __init__(self, coordination_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelCoordinationResponse(_message.Message):
    __slots__ = ("coordination",)
    COORDINATION_FIELD_NUMBER: _ClassVar[int]
    coordination: Coordination
    def __init__(self, coordination: _Optional[_Union[Coordination, _Mapping]] = ...) -> None: ...

class ListCoordinationsRequest(_message.Message):
    __slots__ = ("status", "agent_id", "correlation_id", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: CoordinationStatus
    agent_id: str
    correlation_id: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[CoordinationStatus, str]] = ..., agent_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCoordinationsResponse(_message.Message):
    __slots__ = ("coordinations", "next_page_token")
    COORDINATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    coordinations: _containers.RepeatedCompositeFieldContainer[Coordination]
    next_page_token: str
    def __init__(self, coordinations: _Optional[_Iterable[_Union[Coordination, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "result", "progress")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    hello: WorkerHello
    heartbeat: WorkerHeartbeat
    result: TaskResult
    progress: TaskProgress
    def __init__(self, hello: _Optional[_Union[WorkerHello, _Mapping]] = ..., heartbeat: _Optional[_Union[WorkerHeartbeat, _Mapping]] = ..., result: _Optional[_Union[TaskResult, _Mapping]] = ..., progress: _Optional[_Union[TaskProgress, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "assignment", "cancel")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    welcome: WorkerWelcome
    assignment: TaskAssignment
    cancel: CancelTask
    def __init__(self, welcome: _Optional[_Union[WorkerWelcome, _Mapping]] = ..., assignment: _Optional[_Union[TaskAssignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelTask, _Mapping]] = ...) -> None: ...

class WorkerHello(_message.Message):
    __slots__ = ("agent_id", "name", "capabilities", "max_concurrency", "labels", "sdk_version", "tools")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    sdk_version: str
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., sdk_version: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ...) -> None: ...

class WorkerWelcome(_message.Message):
    __slots__ = ("agent_id", "session_id", "heartbeat_interval", "heartbeat_timeout", "server_version")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    session_id: str
    heartbeat_interval: _duration_pb2.Duration
    heartbeat_timeout: _duration_pb2.Duration
    server_version: str
    def __init__(self, agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., server_version: _Optional[str] = ...) -> None: ...

class WorkerHeartbeat(_message.Message):
    __slots__ = ("running_task_ids", "time")
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    time: _timestamp_pb2.Timestamp
    def __init__(self, running_task_ids: _Optional[_Iterable[str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task_id", "attempt", "coordination_id", "execution_id", "step_id", "task", "context", "trace_context", "deadline", "priority", "correlation_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COORDINATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    coordination_id: str
    execution_id: str
    step_id: str
    task: str
    context: _struct_pb2.Struct
    trace_context: _common_pb2.TraceContext
    deadline: _timestamp_pb2.Timestamp
    priority: _common_pb2.Priority
    correlation_id: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., coordination_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., step_id: _Optional[str] = ..., task: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_context: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_id", "attempt", "output", "structured_output", "error", "usage", "duration")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    output: str
    structured_output: _struct_pb2.Value
    error: TaskError
    usage: TokenUsage
    duration: _duration_pb2.Duration
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., output: _Optional[str] = ..., structured_output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("task_id", "attempt", "message", "fraction", "details")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    message: str
    fraction: float
    details: _struct_pb2.Struct
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., fraction: _Optional[float] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CancelTask(_message.Message):
    __slots__ = ("task_id", "attempt", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
