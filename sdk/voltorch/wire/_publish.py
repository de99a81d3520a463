"""What a publish answers: EventReceipt <-> PublishResult, and PublishStream's per-request results
(a receipt, or the PublishError that refused the event) <-> PublishResult | PublishError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from voltorch.v1 import events_pb2 as pb

from ._values import to_datetime


@dataclass(frozen=True)
class PublishResult:
    sequence: int
    id: str
    time: datetime | None
    duplicate: bool  # the id was already in the log: nothing was appended, `sequence` is the original's


@dataclass(frozen=True)
class PublishError:
    """Why the server refused one event of a publisher's stream (nothing of it was appended)."""

    reason: str  # an ErrorReason name, e.g. "FIELD_INVALID"
    field: str  # e.g. "event.type"
    message: str  # e.g. "event.type: required"
    code: int  # a google.rpc.Code (the server's status mapping decides it: INVALID_ARGUMENT)


def receipt_from_pb(r: pb.EventReceipt) -> PublishResult:
    return PublishResult(r.sequence, r.id, to_datetime(r.time, r.HasField("time")), r.duplicate)


def publish_error_pb(code: int, reason: str, field: str, message: str) -> pb.PublishError:
    return pb.PublishError(code=code, reason=reason, field=field, message=message)


def publish_outcome_from_pb(r: pb.PublishResult) -> PublishResult | PublishError:
    """One PublishStream request's answer."""
    if r.HasField("error"):
        e = r.error
        return PublishError(e.reason, e.field, e.message, e.code)
    return receipt_from_pb(r.receipt)
