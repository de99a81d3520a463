"""A failed call's google.rpc details on the wire: ErrorInfo always, BadRequest's field violations and
PreconditionFailure's violations when there are any.

The server writes them with error_details_pb straight from its domain error (its own violations, read
through the ...Like protocols); the SDK reads them back with error_details_from_pb into ErrorDetails, whose
violations are the ones its exceptions carry. grpcio-status packs and unpacks the google.rpc.Status
around them on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2

DOMAIN = "voltorch.dev"  # ErrorInfo.domain of every error the server sends


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


class FieldViolationLike(Protocol):
    @property
    def field(self) -> str: ...
    @property
    def description(self) -> str: ...


class PreconditionViolationLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call's details say; empty when it carried none (e.g. a status from the transport)."""

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    precondition_violations: list[PreconditionViolation] = field(default_factory=list)


def _pack(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def error_details_pb(
    reason: str,
    metadata: Mapping[str, str],
    *,
    domain: str = DOMAIN,
    field_violations: Sequence[FieldViolationLike] = (),
    precondition_violations: Sequence[PreconditionViolationLike] = (),
) -> list[any_pb2.Any]:
    """The details in the order the server has always sent them: ErrorInfo, then BadRequest and
    PreconditionFailure, each only when it has violations."""
    details = [_pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata))]
    if field_violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in field_violations
                    ]
                )
            )
        )
    if precondition_violations:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=v.type, subject=v.subject, description=v.description
                        )
                        for v in precondition_violations
                    ]
                )
            )
        )
    return details


def error_details_from_pb(details: Iterable[any_pb2.Any]) -> ErrorDetails:
    """Details of other types are skipped; of a type sent twice, the last one counts."""
    reason, domain, metadata = "", "", {}
    fvs: list[FieldViolation] = []
    pvs: list[PreconditionViolation] = []
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fvs = [FieldViolation(v.field, v.description) for v in br.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            detail.Unpack(pf)
            pvs = [PreconditionViolation(v.type, v.subject, v.description) for v in pf.violations]
    return ErrorDetails(reason, domain, metadata, fvs, pvs)
