"""The API's buf-style enums (`AGENT_KIND_LLM = 1`, `AGENT_KIND_UNSPECIFIED = 0`) as lower-case names
("llm"), read from the generated descriptors: one table per enum for the SDK and the server alike."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from ..v1 import coordination_pb2, workflows_pb2


@dataclass(frozen=True)
class EnumTable:
    """`numbers` {'llm': 1, ...} for writing, `names` {1: 'llm', ...} for reading; UNSPECIFIED is in
    neither (0 means "not set", which each field defaults in its own way)."""

    numbers: dict[str, int]
    names: dict[int, str]

    @classmethod
    def of(cls, enum: EnumTypeWrapper) -> EnumTable:
        first = enum.DESCRIPTOR.values[0].name  # <PREFIX>UNSPECIFIED, buf style
        prefix = first.removesuffix("UNSPECIFIED")
        numbers = {v.name.removeprefix(prefix).lower(): v.number for v in enum.DESCRIPTOR.values if v.number}
        return cls(numbers, {n: name for name, n in numbers.items()})


AGENT_KINDS = EnumTable.of(coordination_pb2.AgentKind)
AGENT_STATUSES = EnumTable.of(coordination_pb2.AgentStatus)
COORDINATION_MODES = EnumTable.of(coordination_pb2.CoordinationMode)
COORDINATION_STATUSES = EnumTable.of(coordination_pb2.CoordinationStatus)
CAPABILITY_UPDATE_MODES = EnumTable.of(coordination_pb2.CapabilityUpdateMode)
PARAMETER_TYPES = EnumTable.of(workflows_pb2.ParameterType)
EXECUTION_STATUSES = EnumTable.of(workflows_pb2.ExecutionStatus)
STEP_STATUSES = EnumTable.of(workflows_pb2.StepStatus)
WAIT_KINDS = EnumTable.of(workflows_pb2.WaitKind)
OVERLAP_POLICIES = EnumTable.of(workflows_pb2.OverlapPolicy)
CATCHUP_POLICIES = EnumTable.of(workflows_pb2.CatchupPolicy)
