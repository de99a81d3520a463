import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from voltorch.v1 import common_pb2 as _common_pb2
from voltorch.v1 import coordination_pb2 as _coordination_pb2
from voltorch.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParameterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAMETER_TYPE_UNSPECIFIED: _ClassVar[ParameterType]
    PARAMETER_TYPE_STRING: _ClassVar[ParameterType]
    PARAMETER_TYPE_NUMBER: _ClassVar[ParameterType]
    PARAMETER_TYPE_INTEGER: _ClassVar[ParameterType]
    PARAMETER_TYPE_BOOLEAN: _ClassVar[ParameterType]
    PARAMETER_TYPE_LIST: _ClassVar[ParameterType]
    PARAMETER_TYPE_OBJECT: _ClassVar[ParameterType]

class ExecutionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_STATUS_UNSPECIFIED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_PENDING: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_QUEUED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_RUNNING: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_PAUSED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_COMPLETED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_FAILED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_CANCELLED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_TIMED_OUT: _ClassVar[ExecutionStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_COMPLETED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]
    STEP_STATUS_CANCELLED: _ClassVar[StepStatus]
    STEP_STATUS_RETRYING: _ClassVar[StepStatus]

class WaitKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_KIND_UNSPECIFIED: _ClassVar[WaitKind]
    WAIT_KIND_SIGNAL: _ClassVar[WaitKind]
    WAIT_KIND_APPROVAL: _ClassVar[WaitKind]
    WAIT_KIND_SLEEP: _ClassVar[WaitKind]
    WAIT_KIND_START_AFTER: _ClassVar[WaitKind]

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_SKIP: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_BUFFER_ONE: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_ALLOW: _ClassVar[OverlapPolicy]

class CatchupPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATCHUP_POLICY_UNSPECIFIED: _ClassVar[CatchupPolicy]
    CATCHUP_POLICY_SKIP: _ClassVar[CatchupPolicy]
    CATCHUP_POLICY_LATEST: _ClassVar[CatchupPolicy]
    CATCHUP_POLICY_ALL: _ClassVar[CatchupPolicy]
PARAMETER_TYPE_UNSPECIFIED: ParameterType
PARAMETER_TYPE_STRING: ParameterType
PARAMETER_TYPE_NUMBER: ParameterType
PARAMETER_TYPE_INTEGER: ParameterType
PARAMETER_TYPE_BOOLEAN: ParameterType
PARAMETER_TYPE_LIST: ParameterType
PARAMETER_TYPE_OBJECT: ParameterType
EXECUTION_STATUS_UNSPECIFIED: ExecutionStatus
EXECUTION_STATUS_PENDING: ExecutionStatus
EXECUTION_STATUS_QUEUED: ExecutionStatus
EXECUTION_STATUS_RUNNING: ExecutionStatus
EXECUTION_STATUS_PAUSED: ExecutionStatus
EXECUTION_STATUS_COMPLETED: ExecutionStatus
EXECUTION_STATUS_FAILED: ExecutionStatus
EXECUTION_STATUS_CANCELLED: ExecutionStatus
EXECUTION_STATUS_TIMED_OUT: ExecutionStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_COMPLETED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
STEP_STATUS_CANCELLED: StepStatus
STEP_STATUS_RETRYING: StepStatus
WAIT_KIND_UNSPECIFIED: WaitKind
WAIT_KIND_SIGNAL: WaitKind
WAIT_KIND_APPROVAL: WaitKind
WAIT_KIND_SLEEP: WaitKind
WAIT_KIND_START_AFTER: WaitKind
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
OVERLAP_POLICY_SKIP: OverlapPolicy
OVERLAP_POLICY_BUFFER_ONE: OverlapPolicy
OVERLAP_POLICY_ALLOW: OverlapPolicy
CATCHUP_POLICY_UNSPECIFIED: CatchupPolicy
CATCHUP_POLICY_SKIP: CatchupPolicy
CATCHUP_POLICY_LATEST: CatchupPolicy
CATCHUP_POLICY_ALL: CatchupPolicy

class ParameterSpec(_message.Message):
    __slots__ = ("name", "type", "required", "default_value", "min", "max", "pattern", "enum_values", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    ENUM_VALUES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ParameterType
    required: bool
    default_value: _struct_pb2.Value
    min: float
    max: float
    pattern: str
    enum_values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ParameterType, str]] = ..., required: _Optional[bool] = ..., default_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., pattern: _Optional[str] = ..., enum_values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "backoff_multiplier", "max_backoff", "non_retryable_errors")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    backoff_multiplier: float
    max_backoff: _duration_pb2.Duration
    non_retryable_errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_multiplier: _Optional[float] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., non_retryable_errors: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentTaskStep(_message.Message):
    __slots__ = ("agent_id", "capabilities", "task", "context", "json_output", "fallback_to_any_agent")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    JSON_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_TO_ANY_AGENT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    task: str
    context: _struct_pb2.Struct
    json_output: bool
    fallback_to_any_agent: bool
    def __init__(self, agent_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., task: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., json_output: _Optional[bool] = ..., fallback_to_any_agent: _Optional[bool] = ...) -> None: ...

class CoordinationStep(_message.Message):
    __slots__ = ("mode", "source_agent_id", "target_agent_id", "agent_ids", "capabilities", "task", "condition")
    MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    mode: _coordination_pb2.CoordinationMode
    source_agent_id: str
    target_agent_id: str
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    task: str
    condition: _coordination_pb2.CoordinationCondition
    def __init__(self, mode: _Optional[_Union[_coordination_pb2.CoordinationMode, str]] = ..., source_agent_id: _Optional[str] = ..., target_agent_id: _Optional[str] = ..., agent_ids: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., task: _Optional[str] = ..., condition: _Optional[_Union[_coordination_pb2.CoordinationCondition, _Mapping]] = ...) -> None: ...

class ConditionStep(_message.Message):
    __slots__ = ("source_step_id", "predicate", "then_steps", "else_steps")
    SOURCE_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    THEN_STEPS_FIELD_NUMBER: _ClassVar[int]
    ELSE_STEPS_FIELD_NUMBER: _ClassVar[int]
    source_step_id: str
    predicate: _coordination_pb2.CoordinationCondition
    then_steps: _containers.RepeatedScalarFieldContainer[str]
    else_steps: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source_step_id: _Optional[str] = ..., predicate: _Optional[_Union[_coordination_pb2.CoordinationCondition, _Mapping]] = ..., then_steps: _Optional[_Iterable[str]] = ..., else_steps: _Optional[_Iterable[str]] = ...) -> None: ...

class FanOutStep(_message.Message):
    __slots__ = ("items_from_step_id", "items_path", "task", "max_parallel", "max_items", "truncate_items", "item_dependencies")
    ITEMS_FROM_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_PATH_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEM_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    items_from_step_id: str
    items_path: str
    task: AgentTaskStep
    max_parallel: int
    max_items: int
    truncate_items: bool
    item_dependencies: bool
    def __init__(self, items_from_step_id: _Optional[str] = ..., items_path: _Optional[str] = ..., task: _Optional[_Union[AgentTaskStep, _Mapping]] = ..., max_parallel: _Optional[int] = ..., max_items: _Optional[int] = ..., truncate_items: _Optional[bool] = ..., item_dependencies: _Optional[bool] = ...) -> None: ...

class WaitStep(_message.Message):
    __slots__ = ("signal", "timeout")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    signal: str
    timeout: _duration_pb2.Duration
    def __init__(self, signal: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ApprovalStep(_message.Message):
    __slots__ = ("prompt", "data", "signal", "timeout")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    data: str
    signal: str
    timeout: _duration_pb2.Duration
    def __init__(self, prompt: _Optional[str] = ..., data: _Optional[str] = ..., signal: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SleepStep(_message.Message):
    __slots__ = ("duration", "until")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    until: _timestamp_pb2.Timestamp
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StepSpec(_message.Message):
    __slots__ = ("id", "name", "agent_task", "coordination", "condition", "fan_out", "wait", "approval", "sleep", "depends_on", "retry", "timeout", "allow_failure", "start_after")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_TASK_FIELD_NUMBER: _ClassVar[int]
    COORDINATION_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    FAN_OUT_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FAILURE_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    agent_task: AgentTaskStep
    coordination: CoordinationStep
    condition: ConditionStep
    fan_out: FanOutStep
    wait: WaitStep
    approval: ApprovalStep
    sleep: SleepStep
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    retry: RetryPolicy
    timeout: _duration_pb2.Duration
    allow_failure: bool
    start_after: _duration_pb2.Duration
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., agent_task: _Optional[_Union[AgentTaskStep, _Mapping]] = ..., coordination: _Optional[_Union[CoordinationStep, _Mapping]] = ..., condition: _Optional[_Union[ConditionStep, _Mapping]] = ..., fan_out: _Optional[_Union[FanOutStep, _Mapping]] = ..., wait: _Optional[_Union[WaitStep, _Mapping]] = ..., approval: _Optional[_Union[ApprovalStep, _Mapping]] = ..., sleep: _Optional[_Union[SleepStep, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., allow_failure: _Optional[bool] = ..., start_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WorkflowTemplate(_message.Message):
    __slots__ = ("name", "version", "description", "category", "parameters", "steps", "default_retry", "timeout", "labels", "builtin", "create_time", "budget")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    description: str
    category: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    steps: _containers.RepeatedCompositeFieldContainer[StepSpec]
    default_retry: RetryPolicy
    timeout: _duration_pb2.Duration
    labels: _containers.ScalarMap[str, str]
    builtin: bool
    create_time: _timestamp_pb2.Timestamp
    budget: Budget
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., description: _Optional[str] = ..., category: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., steps: _Optional[_Iterable[_Union[StepSpec, _Mapping]]] = ..., default_retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., builtin: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_tokens", "max_cost", "max_llm_calls")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_FIELD_NUMBER: _ClassVar[int]
    MAX_LLM_CALLS_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    max_cost: float
    max_llm_calls: int
    def __init__(self, max_tokens: _Optional[int] = ..., max_cost: _Optional[float] = ..., max_llm_calls: _Optional[int] = ...) -> None: ...

class RegisterTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: WorkflowTemplate
    def __init__(self, template: _Optional[_Union[WorkflowTemplate, _Mapping]] = ...) -> None: ...

class RegisterTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: WorkflowTemplate
    def __init__(self, template: _Optional[_Union[WorkflowTemplate, _Mapping]] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: WorkflowTemplate
    def __init__(self, template: _Optional[_Union[WorkflowTemplate, _Mapping]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("category", "all_versions", "page_size", "page_token")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ALL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    category: str
    all_versions: bool
    page_size: int
    page_token: str
    def __init__(self, category: _Optional[str] = ..., all_versions: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[WorkflowTemplate]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[WorkflowTemplate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StepExecution(_message.Message):
    __slots__ = ("step_id", "name", "status", "attempts", "output", "structured_output", "error", "agent_id", "coordination_id", "start_time", "end_time", "next_retry_time", "children", "usage")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATION_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_RETRY_TIME_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    name: str
    status: StepStatus
    attempts: int
    output: str
    structured_output: _struct_pb2.Value
    error: _coordination_pb2.TaskError
    agent_id: str
    coordination_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    next_retry_time: _timestamp_pb2.Timestamp
    children: _containers.RepeatedCompositeFieldContainer[StepExecution]
    usage: _coordination_pb2.TokenUsage
    def __init__(self, step_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., attempts: _Optional[int] = ..., output: _Optional[str] = ..., structured_output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[_coordination_pb2.TaskError, _Mapping]] = ..., agent_id: _Optional[str] = ..., coordination_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_retry_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., children: _Optional[_Iterable[_Union[StepExecution, _Mapping]]] = ..., usage: _Optional[_Union[_coordination_pb2.TokenUsage, _Mapping]] = ...) -> None: ...

class Execution(_message.Message):
    __slots__ = ("id", "request_id", "template_name", "template_version", "status", "parameters", "steps", "result", "error", "priority", "labels", "correlation_id", "trace_id", "create_time", "start_time", "end_time", "update_time", "usage", "budget", "waiting", "replica_id", "epoch")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    template_name: str
    template_version: int
    status: ExecutionStatus
    parameters: _struct_pb2.Struct
    steps: _containers.RepeatedCompositeFieldContainer[StepExecution]
    result: _struct_pb2.Value
    error: _coordination_pb2.TaskError
    priority: _common_pb2.Priority
    labels: _containers.ScalarMap[str, str]
    correlation_id: str
    trace_id: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    usage: _coordination_pb2.TokenUsage
    budget: Budget
    waiting: _containers.RepeatedCompositeFieldContainer[WaitingFor]
    replica_id: str
    epoch: int
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[int] = ..., status: _Optional[_Union[ExecutionStatus, str]] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[StepExecution, _Mapping]]] = ..., result: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[_coordination_pb2.TaskError, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., correlation_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage: _Optional[_Union[_coordination_pb2.TokenUsage, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., waiting: _Optional[_Iterable[_Union[WaitingFor, _Mapping]]] = ..., replica_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class WaitingFor(_message.Message):
    __slots__ = ("step_id", "kind", "signal", "prompt", "data", "deadline")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    kind: WaitKind
    signal: str
    prompt: str
    data: _struct_pb2.Value
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, step_id: _Optional[str] = ..., kind: _Optional[_Union[WaitKind, str]] = ..., signal: _Optional[str] = ..., prompt: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartExecutionRequest(_message.Message):
    __slots__ = ("request_id", "template_name", "template_version", "parameters", "priority", "labels", "correlation_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    template_name: str
    template_version: int
    parameters: _struct_pb2.Struct
    priority: _common_pb2.Priority
    labels: _containers.ScalarMap[str, str]
    correlation_id: str
    def __init__(self, request_id: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[int] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class StartExecutionResponse(_message.Message):
    __slots__ = ("execution", "existing")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    existing: bool
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class GetExecutionRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class GetExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...

class ListExecutionsRequest(_message.Message):
    __slots__ = ("status", "template_name", "created_after", "created_before", "include_steps", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STEPS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: ExecutionStatus
    template_name: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    include_steps: bool
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[ExecutionStatus, str]] = ..., template_name: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., include_steps: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExecutionsResponse(_message.Message):
    __slots__ = ("executions", "next_page_token")
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    executions: _containers.RepeatedCompositeFieldContainer[Execution]
    next_page_token: str
    def __init__(self, executions: _Optional[_Iterable[_Union[Execution, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelExecutionRequest(_message.Message):
    __slots__ = ("execution_id", "reason")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    reason: str
    def __init__(self, execution_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...

class PauseExecutionRequest(_message.Message):
    __slots__ = ("execution_id", "reason")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    reason: str
    def __init__(self, execution_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...

class ResumeExecutionRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class ResumeExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...

class WatchExecutionRequest(_message.Message):
    __slots__ = ("execution_id", "from_sequence", "include_execution", "max_batch", "terminal_only")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXECUTION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    from_sequence: int
    include_execution: bool
    max_batch: int
    terminal_only: bool
    def __init__(self, execution_id: _Optional[str] = ..., from_sequence: _Optional[int] = ..., include_execution: _Optional[bool] = ..., max_batch: _Optional[int] = ..., terminal_only: _Optional[bool] = ...) -> None: ...

class WatchExecutionResponse(_message.Message):
    __slots__ = ("event", "execution", "updates")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.Event
    execution: Execution
    updates: _containers.RepeatedCompositeFieldContainer[WatchExecutionResponse]
    def __init__(self, event: _Optional[_Union[_events_pb2.Event, _Mapping]] = ..., execution: _Optional[_Union[Execution, _Mapping]] = ..., updates: _Optional[_Iterable[_Union[WatchExecutionResponse, _Mapping]]] = ...) -> None: ...

class RunExecutionRequest(_message.Message):
    __slots__ = ("start", "include_execution", "max_batch", "terminal_only")
    START_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXECUTION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    start: StartExecutionRequest
    include_execution: bool
    max_batch: int
    terminal_only: bool
    def __init__(self, start: _Optional[_Union[StartExecutionRequest, _Mapping]] = ..., include_execution: _Optional[bool] = ..., max_batch: _Optional[int] = ..., terminal_only: _Optional[bool] = ...) -> None: ...

class RunExecutionResponse(_message.Message):
    __slots__ = ("start", "updates")
    START_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    start: StartExecutionResponse
    updates: _containers.RepeatedCompositeFieldContainer[WatchExecutionResponse]
    def __init__(self, start: _Optional[_Union[StartExecutionResponse, _Mapping]] = ..., updates: _Optional[_Iterable[_Union[WatchExecutionResponse, _Mapping]]] = ...) -> None: ...

class CompleteWorkflowOptions(_message.Message):
    __slots__ = ("max_tasks", "max_parallel", "skip_review", "timeout", "step_timeout", "retry", "budget", "approve_tasks")
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    SKIP_REVIEW_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    STEP_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    APPROVE_TASKS_FIELD_NUMBER: _ClassVar[int]
    max_tasks: int
    max_parallel: int
    skip_review: bool
    timeout: _duration_pb2.Duration
    step_timeout: _duration_pb2.Duration
    retry: RetryPolicy
    budget: Budget
    approve_tasks: bool
    def __init__(self, max_tasks: _Optional[int] = ..., max_parallel: _Optional[int] = ..., skip_review: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., step_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., approve_tasks: _Optional[bool] = ...) -> None: ...

class ExecuteCompleteWorkflowRequest(_message.Message):
    __slots__ = ("requirement", "request_id", "options", "priority", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    requirement: str
    request_id: str
    options: CompleteWorkflowOptions
    priority: _common_pb2.Priority
    labels: _containers.ScalarMap[str, str]
    def __init__(self, requirement: _Optional[str] = ..., request_id: _Optional[str] = ..., options: _Optional[_Union[CompleteWorkflowOptions, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExecuteCompleteWorkflowResponse(_message.Message):
    __slots__ = ("execution", "existing")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    existing: bool
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class Signal(_message.Message):
    __slots__ = ("id", "execution_id", "name", "payload", "request_id", "sender", "create_time", "consumed_by_step")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_BY_STEP_FIELD_NUMBER: _ClassVar[int]
    id: str
    execution_id: str
    name: str
    payload: _struct_pb2.Value
    request_id: str
    sender: str
    create_time: _timestamp_pb2.Timestamp
    consumed_by_step: str
    def __init__(self, id: _Optional[str] = ..., execution_id: _Optional[str] = ..., name: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., request_id: _Optional[str] = ..., sender: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumed_by_step: _Optional[str] = ...) -> None: ...

class SignalExecutionRequest(_message.Message):
    __slots__ = ("execution_id", "name", "payload", "request_id", "sender")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    name: str
    payload: _struct_pb2.Value
    request_id: str
    sender: str
    def __init__(self, execution_id: _Optional[str] = ..., name: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., request_id: _Optional[str] = ..., sender: _Optional[str] = ...) -> None: ...

class SignalExecutionResponse(_message.Message):
    __slots__ = ("signal", "existing")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    signal: Signal
    existing: bool
    def __init__(self, signal: _Optional[_Union[Signal, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "template_name", "template_version", "parameters", "cron", "interval", "time_zone", "overlap", "catchup", "paused", "description", "next_tick_time", "last_tick_time", "last_execution_id", "create_time", "ticks_started", "ticks_skipped", "start_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NEXT_TICK_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_TICK_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TICKS_STARTED_FIELD_NUMBER: _ClassVar[int]
    TICKS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    template_name: str
    template_version: int
    parameters: _struct_pb2.Struct
    cron: str
    interval: _duration_pb2.Duration
    time_zone: str
    overlap: OverlapPolicy
    catchup: CatchupPolicy
    paused: bool
    description: str
    next_tick_time: _timestamp_pb2.Timestamp
    last_tick_time: _timestamp_pb2.Timestamp
    last_execution_id: str
    create_time: _timestamp_pb2.Timestamp
    ticks_started: int
    ticks_skipped: int
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[int] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cron: _Optional[str] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., time_zone: _Optional[str] = ..., overlap: _Optional[_Union[OverlapPolicy, str]] = ..., catchup: _Optional[_Union[CatchupPolicy, str]] = ..., paused: _Optional[bool] = ..., description: _Optional[str] = ..., next_tick_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_tick_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_execution_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ticks_started: _Optional[int] = ..., ticks_skipped: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class CreateScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules", "next_page_token")
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    next_page_token: str
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TriggerScheduleRequest(_message.Message):
    __slots__ = ("schedule_id", "request_id")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    request_id: str
    def __init__(self, schedule_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class TriggerScheduleResponse(_message.Message):
    __slots__ = ("execution", "existing")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    existing: bool
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class PauseScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class PauseScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class UnpauseScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class UnpauseScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...
