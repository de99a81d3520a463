"""voltorch: the Python SDK for the voltorch orchestration server."""

from ._client import TLS, Client
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

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "AlreadyExistsError",
    "Change",
    "Client",
    "ConflictError",
    "Exists",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "KeyValue",
    "NotFoundError",
    "OutOfRangeError",
    "Put",
    "Remove",
    "ResourceExhaustedError",
    "SetResult",
    "SnapshotInfo",
    "TransactionResult",
    "UnavailableError",
    "ValueIs",
    "VersionIs",
    "VoltorchError",
]
