"""Versioned key/value state: the store, its write batching and its read cache."""

from ._kv_cache import KVCache, Row
from ._store import (
    PUT,
    Change,
    Condition,
    DeleteOp,
    KeyValue,
    SetOp,
    SnapshotInfo,
    StateStore,
    TransactionResult,
)
from ._store_port import StatePort

__all__ = [
    "PUT",
    "Change",
    "Condition",
    "DeleteOp",
    "KVCache",
    "KeyValue",
    "Row",
    "SetOp",
    "SnapshotInfo",
    "StatePort",
    "StateStore",
    "TransactionResult",
]
