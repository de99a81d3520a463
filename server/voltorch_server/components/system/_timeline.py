"""One trace or correlation as a single story: its events and errors, across components, in causal order.

Starting from the given id, the ids found on the matching records are followed one step (a trace leads
to the correlations it touched — e.g. the workflow an RPC started — and a correlation to the traces its
work ran under), so a failed workflow reads end to end even where its steps ran under later traces.
Events are ordered by causation (causes first, ties by sequence); each error takes the place of the
`system.error` event written with it, or else follows the last event of its span or correlation that
precedes it in time.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidArgument, NotFound
from ..events import Event, EventLog, causal_order
from ..shared import PAGE_BYTES, fitting, wire_bytes
from ._errors_log import ErrorLog, ErrorRecord, validate_trace_id

DEFAULT_ENTRIES = 1000
MAX_ENTRIES = 10000


@dataclass(frozen=True)
class Timeline:
    entries: list[Event | ErrorRecord]
    trace_ids: list[str]
    correlation_ids: list[str]
    components: list[str]
    truncated: bool


def _ids(records: list[Any]) -> tuple[set[str], set[str]]:
    return {r.trace_id for r in records if r.trace_id}, {
        r.correlation_id for r in records if r.correlation_id
    }


def timeline(
    events_log: EventLog,
    errors: ErrorLog,
    *,
    trace_id: str = "",
    correlation_id: str = "",
    max_entries: int = 0,
) -> Timeline:
    if trace_id:
        trace_id = validate_trace_id(trace_id, "trace_id")
    if not trace_id and not correlation_id:  # after normalising: a blank trace_id is none
        raise InvalidArgument("id", "give a trace_id or a correlation_id", reason="FIELD_REQUIRED")
    if len(correlation_id) > 256:
        raise InvalidArgument("correlation_id", "at most 256 characters")
    if max_entries < 0:
        raise InvalidArgument("max_entries", f"must not be negative (got {max_entries})")
    limit = min(max_entries or DEFAULT_ENTRIES, MAX_ENTRIES)
    tids = {trace_id} if trace_id else set()
    cids = {correlation_id} if correlation_id else set()
    events = events_log.carrying(tids, cids, limit + 1)
    errs = errors.matching(tids, cids, limit + 1)
    if not events and not errs:
        raise NotFound("trace", trace_id or correlation_id, "no event or error carries that id")
    more_t, more_c = _ids([*events, *errs])
    if not (more_t <= tids and more_c <= cids):
        tids, cids = tids | more_t, cids | more_c
        events = events_log.carrying(tids, cids, limit + 1)
        errs = errors.matching(tids, cids, limit + 1)
    truncated = len(events) > limit or len(errs) > limit
    entries = _merge(events[:limit], errs[:limit])
    if len(entries) > limit:
        entries, truncated = entries[:limit], True
    fit = fitting((_weight(e) for e in entries), budget=3 * PAGE_BYTES)  # no pages: what one answer holds
    if fit < len(entries):
        entries, truncated = entries[:fit], True
    all_t, all_c = _ids(entries)
    components = {e.component if isinstance(e, ErrorRecord) else e.source for e in entries}
    return Timeline(
        entries=entries,
        trace_ids=sorted(all_t),
        correlation_ids=sorted(all_c),
        components=sorted(c for c in components if c),
        truncated=truncated,
    )


def _weight(entry: Event | ErrorRecord) -> int:
    """Roughly an entry's size on the wire: its data or message, and its other fields."""
    return 256 + (len(entry.message) if isinstance(entry, ErrorRecord) else wire_bytes(_compact(entry.data)))


_compact = json.JSONEncoder(separators=(",", ":")).encode


def _merge(events: list[Event], errs: list[ErrorRecord]) -> list[Event | ErrorRecord]:
    by_event = {e.event_sequence: e for e in errs if e.event_sequence}
    ordered = [n.event for n in causal_order(events)]
    out: list[Event | ErrorRecord] = []
    placed: set[str] = set()
    for ev in ordered:
        err = by_event.get(ev.sequence) if ev.type == "system.error" else None
        if err is not None:
            out.append(err)
            placed.add(err.id)
        else:
            out.append(ev)
    for err in sorted((e for e in errs if e.id not in placed), key=lambda e: e.time):
        out.insert(_slot(out, err), err)
    return out


def _slot(entries: list[Event | ErrorRecord], err: ErrorRecord) -> int:
    """After the last earlier entry of the error's span or correlation; else in time order."""
    best = -1
    for i, e in enumerate(entries):
        if e.time > err.time:
            continue
        same_span = err.span_id and e.span_id == err.span_id
        same_corr = err.correlation_id and e.correlation_id == err.correlation_id
        if same_span or same_corr:
            best = i
    if best >= 0:
        return best + 1
    return bisect.bisect_right([e.time for e in entries], err.time)
