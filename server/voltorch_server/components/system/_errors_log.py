"""Recorded errors: what failed, where, and under which trace — so failures can be read as one story.

Every record is written together with a `system.error` event (same transaction, same trace and
correlation ids), carries the trace/span ids of the span it happened in, and counts towards its
component's error count in GetHealth. Components record internal failures with
`Component.record_error(...)`; failed RPCs are recorded by the server's interceptor.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from ..._ids import new_id
from ...errors import InvalidArgument, Unavailable
from ...metrics import NOOP, Metrics
from ...priority import Priority
from ...telemetry import current_correlation, current_trace
from ..events import NewEvent
from ..shared import decode_token, encode_token, fitting, page_size, wire_bytes
from ._store_port import SystemPort

log = logging.getLogger("voltorch.errors")

MAX_MESSAGE = 4096
_CODE_RE = re.compile(r"[^A-Z0-9_]+")
TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ErrorRecord:
    id: str
    component: str
    code: str
    message: str
    trace_id: str
    span_id: str
    correlation_id: str
    time: float
    details: dict[str, Any]
    event_sequence: int = 0  # the system.error event written with it


def normalize_code(code: str) -> str:
    """UPPER_SNAKE, e.g. 'step timeout' -> 'STEP_TIMEOUT'; empty -> 'INTERNAL'."""
    return _CODE_RE.sub("_", code.strip().upper()).strip("_")[:128] or "INTERNAL"


def validate_trace_id(value: str, field: str) -> str:
    value = value.strip().lower()
    if value and not TRACE_ID_RE.match(value):
        raise InvalidArgument(
            field, "a trace id is 32 lowercase hex characters", reason="TRACE_CONTEXT_INVALID"
        )
    return value


class ErrorLog:
    def __init__(self, store: SystemPort, events: Any, metrics: Metrics = NOOP):
        self.store = store
        self.db = store.db
        self.events = events
        self.metrics = metrics
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}  # per component, since this server started
        self._last: dict[str, ErrorRecord] = {}
        self._latest: ErrorRecord | None = None

    def record(
        self,
        component: str,
        code: str,
        message: str,
        *,
        correlation_id: str = "",
        details: dict[str, Any] | None = None,
        exc: BaseException | None = None,
    ) -> ErrorRecord:
        """Persist one error with the current trace ids (and a system.error event); returns it."""
        ids = current_trace()
        code = normalize_code(code)
        message = (message or (f"{type(exc).__name__}: {exc}" if exc else code))[:MAX_MESSAGE]
        correlation_id = correlation_id or current_correlation()
        details = json.loads(json.dumps(details or {}, default=str))
        if exc is not None:
            details.setdefault("exception", type(exc).__name__)
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
        eid, now = new_id("err"), time.time()
        # The leading fields, in ErrorRecord's order (the same as the table's columns).
        head = (eid, component, code, message, ids.trace_id, ids.span_id, correlation_id, now)
        with self.db.write() as tx:
            event = NewEvent(
                type="system.error",
                source=component,
                data={"error_id": eid, "code": code, "message": message, "details": details},
                correlation_id=correlation_id,
                priority=Priority.HIGH,
            )
            try:
                seq = self.events.append(tx, [event], numbered=True)[0].sequence
            except Unavailable as unreachable:
                # The log is on a PostgreSQL this replica cannot reach (errors stay in its own file):
                # the error is kept without its event, now, rather than lost or waited on.
                log.warning("system.error event of %s not published: %s", component, unreachable.message)
                seq = 0
            self.store.insert_error(tx, (*head, json.dumps(details, separators=(",", ":")), seq or None))
        rec = ErrorRecord(*head, details, seq)
        with self._lock:
            self._counts[component] = self._counts.get(component, 0) + 1
            self._last[component] = rec
            self._latest = rec
        self.metrics.errors.add(1, {"component": component, "code": code})
        return rec

    # -- reading ------------------------------------------------------------------------------------

    def count(self, component: str | None = None) -> int:
        with self._lock:
            return self._counts.get(component, 0) if component else sum(self._counts.values())

    def last(self, component: str | None = None) -> ErrorRecord | None:
        with self._lock:
            return self._last.get(component) if component else self._latest

    def list(
        self,
        *,
        trace_id: str = "",
        correlation_id: str = "",
        component: str = "",
        code: str = "",
        since: float | None = None,
        size: int = 0,
        token: str = "",
    ) -> tuple[list[ErrorRecord], str]:
        """Newest first, filtered (every given filter must match), paged."""
        trace_id = validate_trace_id(trace_id, "trace_id")
        limit = page_size(size)
        query = {"t": trace_id, "c": correlation_id, "m": component, "k": code, "s": since}
        after = decode_token(token, query)
        equal = {"trace_id": trace_id, "correlation_id": correlation_id, "component": component, "code": code}
        rows = self.store.errors(equal, since, int(after) if after is not None else None, limit + 1)
        n = fitting(_weight(rec) for rec, _ in rows[:limit])  # ends early once its errors pass ~1 MiB
        token_out = encode_token(query, rows[n - 1][1]) if len(rows) > n else ""
        return [rec for rec, _ in rows[:n]], token_out

    def matching(
        self, trace_ids: set[str], correlation_ids: set[str], limit: int
    ) -> builtins.list[ErrorRecord]:
        """Errors carrying any of the trace or correlation ids, oldest first."""
        return self.store.errors_carrying(trace_ids, correlation_ids, limit)

    def prune(self, older_than: float) -> int:
        return self.store.prune_errors(older_than)


def _weight(rec: ErrorRecord) -> int:
    """Roughly what an error weighs in a ListErrors answer: its message (up to 4 KiB) and details."""
    return 256 + wire_bytes(rec.message) + wire_bytes(json.dumps(rec.details, separators=(",", ":")))
