"""The API's buf-style enums (`AGENT_KIND_LLM = 1`, `AGENT_KIND_UNSPECIFIED = 0`) as lower-case names
("llm"), read from the generated descriptors: one table per enum for the SDK and the server alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from ..v1 import coordination_pb2, workflows_pb2

E = TypeVar("E", bound=int)


@dataclass(frozen=True)
class EnumTable(Generic[E]):
    """`numbers` {'llm': 1, ...} for writing, `names` {1: 'llm', ...} for reading; UNSPECIFIED is in
    neither (0 means "not set", which each field defaults in its own way)."""

    numbers: dict[str, E]
    names: dict[int, str]

    @classmethod
    def of(cls, enum: type[E]) -> EnumTable[E]:
        # The generated stubs type an enum's values as plain ints: the two casts say what they are.
        descriptor = cast(EnumTypeWrapper, enum).DESCRIPTOR
        first = descriptor.values[0].name  # <PREFIX>UNSPECIFIED, buf style
        prefix = first.removesuffix("UNSPECIFIED")
        numbers = {
            v.name.removeprefix(prefix).lower(): cast(E, v.number) for v in descriptor.values if v.number
        }
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
