"""Validating and encoding an event before it is appended, so a bad one never half-writes a batch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidArgument
from ...json_encoders import encoder
from ...priority import Priority, parse_priority
from ...telemetry import TraceIds, trace_ids_from
from ._filter import validate_type

MAX_DATA_BYTES = 1 << 20
MAX_ID_LEN = 128
MAX_NAME_LEN = 256
_ENCODE = encoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)  # made once (json_encoders)


@dataclass
class NewEvent:
    """An event to publish; the log assigns sequence, id (unless given), time and trace ids."""

    type: str
    source: str = ""
    target: str = ""
    data: Any = None
    correlation_id: str = ""
    causation_id: str = ""
    priority: Priority | int | str = Priority.NORMAL
    traceparent: str = ""
    tracestate: str = ""
    id: str = ""


@dataclass
class Prepared:
    """A validated NewEvent: data encoded once, priority and trace context resolved."""

    id: str  # "" = assign one
    type: str
    source: str
    target: str
    data_json: str
    correlation_id: str
    causation_id: str
    priority: Priority
    trace: TraceIds | None  # None = take the ambient trace context at append time


def _text(value: str, field_name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field_name, f"must be a string (got {type(value).__name__})")
    if len(value) > limit:
        raise InvalidArgument(field_name, f"at most {limit} characters (got {len(value)})")
    if value and not value.isprintable():
        raise InvalidArgument(field_name, "must not contain control characters")
    return value


def prepare(ev: NewEvent, prefix: str = "") -> Prepared:
    """Validate ev; field names in errors are prefix + the proto field path (e.g. 'events[3].type')."""
    validate_type(ev.type, f"{prefix}type")
    _text(ev.id, f"{prefix}id", MAX_ID_LEN)
    if ev.id and ev.id.strip() != ev.id:
        raise InvalidArgument(f"{prefix}id", "must not start or end with whitespace")
    for name, limit in (
        ("source", MAX_NAME_LEN),
        ("target", MAX_NAME_LEN),
        ("correlation_id", MAX_ID_LEN),
        ("causation_id", MAX_ID_LEN),
    ):
        _text(getattr(ev, name), f"{prefix}{name}", limit)
    priority = parse_priority(ev.priority, f"{prefix}priority")
    try:
        data_json = _ENCODE(ev.data)  # one encoder, not one built per call (json.dumps with options)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{prefix}data", f"not JSON: {exc}", reason="VALUE_INVALID") from None
    # A character is at most 4 bytes in UTF-8: most data is measured without encoding it.
    if len(data_json) * 4 > MAX_DATA_BYTES and (size := len(data_json.encode())) > MAX_DATA_BYTES:
        raise InvalidArgument(
            f"{prefix}data", f"{size} bytes encoded; the limit is {MAX_DATA_BYTES}", reason="VALUE_TOO_LARGE"
        )
    trace: TraceIds | None = None
    if ev.traceparent:
        _text(ev.tracestate, f"{prefix}trace_context.tracestate", 512)
        trace = trace_ids_from(ev.traceparent, ev.tracestate)
        if not trace.trace_id:
            raise InvalidArgument(
                f"{prefix}trace_context.traceparent",
                f"not a W3C traceparent: {ev.traceparent[:80]!r} (expected '00-<32 hex>-<16 hex>-<2 hex>')",
                reason="TRACE_CONTEXT_INVALID",
            )
    elif ev.tracestate:
        raise InvalidArgument(
            f"{prefix}trace_context.traceparent",
            "a tracestate needs a traceparent",
            reason="TRACE_CONTEXT_INVALID",
        )
    return Prepared(
        id=ev.id,
        type=ev.type,
        source=ev.source,
        target=ev.target,
        data_json=data_json,
        correlation_id=ev.correlation_id,
        causation_id=ev.causation_id,
        priority=priority,
        trace=trace,
    )


def prepare_own(
    type_: str,
    source: str,
    data: Any,
    *,
    correlation_id: str = "",
    priority: Priority = Priority.NORMAL,
    traceparent: str = "",
    raw: Mapping[str, str] | None = None,
) -> Prepared:
    """What prepare() makes of a component's own event, without re-checking what the component vouches for:
    its type and source are its own constants, its priority a Priority. A workflow step appends ~6 such
    events. The data is encoded and its size checked, the correlation id (a caller's, passed on) is checked
    and a traceparent must parse, as in prepare(), which raises the same errors when they do not hold.
    `raw`: more members of the data (a dict), as JSON text the component made with the same encoding
    (e.g. kept for a row of its own)."""
    if (
        type(correlation_id) is not str
        or len(correlation_id) > MAX_ID_LEN
        or not correlation_id.isprintable()
    ):
        _text(correlation_id, "correlation_id", MAX_ID_LEN)  # raises what is wrong
    try:
        data_json = _ENCODE(data)
    except (TypeError, ValueError):
        data_json = ""
    if raw and data_json:
        members = ",".join(f"{_ENCODE(k)}:{v}" for k, v in raw.items())
        data_json = f"{data_json[:-1]},{members}}}" if data_json != "{}" else f"{{{members}}}"
    trace = trace_ids_from(traceparent) if traceparent else None
    if (
        not data_json
        or (len(data_json) * 4 > MAX_DATA_BYTES and len(data_json.encode()) > MAX_DATA_BYTES)
        or (trace is not None and not trace.trace_id)
    ):
        full = {**data, **{k: json.loads(v) for k, v in raw.items()}} if raw else data
        ev = NewEvent(
            type_,
            source,
            data=full,
            correlation_id=correlation_id,
            priority=priority,
            traceparent=traceparent,
        )
        return prepare(ev)  # raises what is wrong
    return Prepared("", type_, source, "", data_json, correlation_id, "", priority, trace)
