"""Typed exceptions for the statuses the server returns, with their google.rpc details."""

from __future__ import annotations

import grpc
from grpc_status import rpc_status

from .wire import ErrorDetails, FieldViolation, PreconditionViolation, error_details_from_pb


class VoltorchError(Exception):
    """Base of every error the SDK raises for a failed call."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
        precondition_violations: list[PreconditionViolation] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations = list(field_violations or [])
        self.precondition_violations = list(precondition_violations or [])

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgumentError(VoltorchError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.field_violations]


class NotFoundError(VoltorchError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(VoltorchError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(VoltorchError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ConflictError(FailedPreconditionError):
    """A compare-and-set lost: the expected version is not the current one."""


class OutOfRangeError(VoltorchError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhaustedError(VoltorchError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class AbortedError(VoltorchError):
    code = grpc.StatusCode.ABORTED


class UnavailableError(VoltorchError):
    code = grpc.StatusCode.UNAVAILABLE


class CancelledError(VoltorchError):
    code = grpc.StatusCode.CANCELLED


class DeadlineExceededError(VoltorchError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnauthenticatedError(VoltorchError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(VoltorchError):
    code = grpc.StatusCode.PERMISSION_DENIED


class UnimplementedError(VoltorchError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(VoltorchError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[VoltorchError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        OutOfRangeError,
        ResourceExhaustedError,
        AbortedError,
        UnavailableError,
        CancelledError,
        DeadlineExceededError,
        UnauthenticatedError,
        PermissionDeniedError,
        UnimplementedError,
        InternalError,
    )
}


def from_rpc_error(err: grpc.RpcError) -> VoltorchError:
    """Translate a grpc.RpcError (with its rich status details) into a typed exception."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else "") or str(err)
    try:
        status = rpc_status.from_call(err)
    except Exception:
        status = None
    details = error_details_from_pb(status.details) if status is not None else ErrorDetails()
    cls = _BY_CODE.get(code, VoltorchError)
    if cls is FailedPreconditionError and details.reason == "VERSION_CONFLICT":
        cls = ConflictError
    return cls(
        message,
        code=code,
        reason=details.reason,
        metadata=details.metadata,
        field_violations=details.field_violations,
        precondition_violations=details.precondition_violations,
    )


__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "CancelledError",
    "ConflictError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PreconditionViolation",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "VoltorchError",
    "from_rpc_error",
]
