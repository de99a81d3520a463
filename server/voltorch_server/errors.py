"""The server's one domain error hierarchy.

Components raise these (they know nothing of gRPC); `servicers/_status.py` maps them to gRPC status
codes with `google.rpc.Status` details in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


class VoltorchError(Exception):
    """Base of every error a client may see.

    `reason` is a stable UPPER_SNAKE identifier sent as google.rpc.ErrorInfo.reason: one of the ErrorReason
    names in protos/voltorch/v1/error_reason.proto (tests/test_error_reasons.py holds every raise to that).
    The defaults named after a status code are not reasons: raise those classes with a specific `reason`.
    """

    reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(VoltorchError):
    reason = "FIELD_INVALID"

    def __init__(
        self,
        field: str,
        description: str,
        *,
        more: list[FieldViolation] | None = None,
        reason: str | None = None,
    ):
        violations = [FieldViolation(field, description), *(more or [])]
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations), reason=reason)
        self.violations = violations

    def within(self, prefix: str) -> InvalidArgument:
        """The same error about a request nested in another's field `prefix` (its fields' paths start there)."""
        first, *rest = (FieldViolation(f"{prefix}.{v.field}", v.description) for v in self.violations)
        return InvalidArgument(first.field, first.description, more=rest, reason=self.reason)


class NotFound(VoltorchError):
    """Reason <KIND>_NOT_FOUND, e.g. NotFound("execution", id) is EXECUTION_NOT_FOUND."""

    reason = "NOT_FOUND"

    def __init__(self, kind: str, name: str, message: str | None = None):
        super().__init__(
            message or f"{kind} {name!r} not found",
            reason=f"{kind.upper()}_NOT_FOUND",
            metadata={"resource_type": kind, "name": name},
        )
        self.kind = kind
        self.name = name


class AlreadyExists(VoltorchError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(VoltorchError):
    """The system is not in the state the request needs (e.g. a version conflict)."""

    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, violations: list[PreconditionViolation] | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.violations = list(violations or [])


class Conflict(FailedPrecondition):
    """A compare-and-set lost: the version the caller expected is not the current one."""

    reason = "VERSION_CONFLICT"


class OutOfRange(VoltorchError):
    """A revision or sequence the caller asked for is not available (e.g. compacted away)."""

    reason = "OUT_OF_RANGE"


class ResourceExhausted(VoltorchError):
    reason = "RESOURCE_EXHAUSTED"


class Aborted(VoltorchError):
    reason = "ABORTED"


class Unavailable(VoltorchError):
    reason = "UNAVAILABLE"


class Cancelled(VoltorchError):
    reason = "CANCELLED"


class DeadlineExceeded(VoltorchError):
    reason = "DEADLINE_EXCEEDED"


class Unauthenticated(VoltorchError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(VoltorchError):
    reason = "PERMISSION_DENIED"


class Unimplemented(VoltorchError):
    reason = "UNIMPLEMENTED"


class Internal(VoltorchError):
    reason = "INTERNAL"


class StartupError(Exception):
    """The server cannot start as configured (port taken, database unusable or owned by another server,
    bad setting). The message is one line naming the problem and the path or setting; the CLI prints it
    without a traceback and exits 2."""


class DatabaseInUse(StartupError):
    """Another live server holds the database's owner lock: one SQLite file has exactly one server."""

    def __init__(self, path: str, pid: int | None, address: str):
        holder = f"pid {pid}" if pid else "another process"
        where = f", listening on {address}" if address else ""
        super().__init__(
            f"database {path} is in use by another voltorch server ({holder}{where}); "
            "stop it, or give this server another --db"
        )
        self.path = path
        self.pid = pid
        self.address = address


class DatabaseCorrupt(StartupError):
    """PRAGMA quick_check found the database file damaged: refused at start (queries reaching a damaged
    page would fail later, as INTERNAL). One line naming the file and the first problem SQLite found."""

    def __init__(self, path: str, problems: list[str]):
        first = " ".join(problems[0].split()) if problems else "unknown damage"  # one line, always
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            f"database {path} is damaged: {first}{more}; restore it from a backup, or run "
            f"`voltorch db check` for a full report"
        )
        self.path = path
        self.problems = list(problems)


@dataclass
class ErrorInfo:
    """What gets recorded about an error (for GetHealth / ListErrors)."""

    component: str
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "Conflict",
    "DatabaseCorrupt",
    "DatabaseInUse",
    "DeadlineExceeded",
    "ErrorInfo",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "PreconditionViolation",
    "ResourceExhausted",
    "StartupError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "VoltorchError",
]
