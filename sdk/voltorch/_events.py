"""client.events: publish to the durable event log, subscribe (replay + live, resumable), list, correlate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc

from voltorch.v1 import common_pb2, events_pb2, events_pb2_grpc

from ._rpc import STREAM_BATCH, Reconnect, call, pages
from .errors import VoltorchError, from_rpc_error
from .wire import (
    Priority,
    PublishResult,
    from_value,
    receipt_from_pb,
    to_datetime,
    to_duration,
    to_timestamp,
    to_value,
)

if TYPE_CHECKING:
    from ._publisher import Publisher

# A stream that fails with one of these is reopened from where it stopped (nothing lost, nothing repeated).
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class Event:
    """One entry of the event log."""

    sequence: int
    id: str
    type: str
    source: str
    target: str
    data: Any
    correlation_id: str
    causation_id: str
    priority: Priority
    trace_id: str
    span_id: str
    traceparent: str
    tracestate: str
    time: datetime | None


@dataclass(frozen=True)
class NewEvent:
    """An event to publish with `publish_batch` (the same fields as `publish`'s arguments)."""

    type: str
    data: Any = None
    source: str = ""
    target: str = ""
    correlation_id: str = ""
    causation_id: str = ""
    priority: Priority | int | str | None = None
    id: str = ""  # give one to make publishing idempotent
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class EventHeartbeat:
    """A quiet stream's keepalive: every event before `resume_sequence` has been examined."""

    resume_sequence: int
    time: datetime | None


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    next_page_token: str
    head_sequence: int


@dataclass(frozen=True)
class CorrelationNode:
    event: Event
    parent_id: str  # "" for a root
    child_ids: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class Correlation:
    """The events of one correlation in causal order: every cause precedes its effects."""

    correlation_id: str
    nodes: tuple[CorrelationNode, ...]
    root_ids: tuple[str, ...]
    truncated: bool

    @property
    def events(self) -> list[Event]:
        return [n.event for n in self.nodes]


def event_from_pb(pb: events_pb2.Event) -> Event:
    return Event(
        sequence=pb.sequence,
        id=pb.id,
        type=pb.type,
        source=pb.source,
        target=pb.target,
        data=from_value(pb.data) if pb.HasField("data") else None,
        correlation_id=pb.correlation_id,
        causation_id=pb.causation_id,
        priority=Priority.of(pb.priority),
        trace_id=pb.trace_id,
        span_id=pb.span_id,
        traceparent=pb.trace_context.traceparent,
        tracestate=pb.trace_context.tracestate,
        time=to_datetime(pb.time, pb.HasField("time")),
    )


def _event_pb(e: NewEvent) -> events_pb2.Event:
    pb = events_pb2.Event(
        id=e.id,
        type=e.type,
        source=e.source,
        target=e.target,
        correlation_id=e.correlation_id,
        causation_id=e.causation_id,
        priority=None if e.priority is None else Priority.of(e.priority).pb,
    )
    if e.data is not None:
        pb.data.CopyFrom(to_value(e.data))
    if e.traceparent or e.tracestate:
        pb.trace_context.CopyFrom(common_pb2.TraceContext(traceparent=e.traceparent, tracestate=e.tracestate))
    return pb


def _filter(
    types: str | Sequence[str],
    source: str,
    target: str,
    correlation_id: str,
    min_priority: Priority | int | str | None,
    trace_id: str,
) -> events_pb2.EventFilter:
    return events_pb2.EventFilter(
        types=[types] if isinstance(types, str) else list(types),
        source=source,
        target=target,
        correlation_id=correlation_id,
        min_priority=None if min_priority is None else Priority.of(min_priority).pb,
        trace_id=trace_id,
    )


class Subscription:
    """An iterator of events (and, if asked, heartbeats) that survives reconnects.

    When the stream fails transiently (UNAVAILABLE: server restart or network; RESOURCE_EXHAUSTED:
    this consumer overflowed its buffer, or the server's stream limit) it is reopened from the
    sequence after the last one delivered (or the server's resume point), so no event is lost or
    repeated. `close()` (from any thread) ends the iteration. `on_status("reconnecting", sequence)` is
    called when the server goes away (not when this consumer merely overflowed) and
    `on_status("resumed", sequence)` once a new stream answers, with the sequence it continues from.
    """

    def __init__(
        self,
        stub: events_pb2_grpc.EventServiceStub,
        flt: events_pb2.EventFilter,
        *,
        from_sequence: int | None,
        from_time: datetime | float | None,
        heartbeat_interval: float | timedelta | None,
        heartbeats: bool,
        resume: bool,
        reconnect_timeout: float | None,
        metadata: Sequence[tuple[str, str]] | None = None,
        on_status: Callable[[str, int | None], None] | None = None,
    ):
        self._stub = stub
        self._filter = flt
        self._next = from_sequence  # next sequence wanted; None until known (live-only / from_time)
        self._from_time = from_time
        self._heartbeat_interval = heartbeat_interval
        self._heartbeats = heartbeats
        self._resume = resume
        self._backoff = Reconnect(reconnect_timeout)
        self._metadata = metadata
        self._on_status = on_status
        self._away = False  # the server went away; no new stream has answered yet
        self._closed = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self.reconnects = 0
        self._it = self._run()

    @property
    def resume_sequence(self) -> int | None:
        """The sequence to resubscribe from to continue exactly here (None until the server said)."""
        return self._next

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event | EventHeartbeat:
        return next(self._it)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self) -> events_pb2.SubscribeRequest:
        req = events_pb2.SubscribeRequest(filter=self._filter, max_batch=STREAM_BATCH)
        if self._next is not None:
            req.from_sequence = self._next
        elif self._from_time is not None:
            req.from_time.CopyFrom(to_timestamp(self._from_time))
        if self._heartbeat_interval is not None:
            req.heartbeat_interval.CopyFrom(to_duration(self._heartbeat_interval))
        return req

    def _run(self) -> Iterator[Event | EventHeartbeat]:
        while not self._closed.is_set():
            with self._lock:
                if self._closed.is_set():
                    return
                self._call = self._stub.Subscribe(self._request(), metadata=self._metadata)
            failure: VoltorchError | None = None
            try:
                for resp in self._call:
                    self._backoff.progress()
                    if self._away:
                        self._away = False
                        self._status("resumed", resp)
                    kind = resp.WhichOneof("payload")
                    if kind == "batch" or kind == "event":  # "event": a server without batching
                        for pb in resp.batch.events if kind == "batch" else (resp.event,):
                            if self._next is not None and pb.sequence < self._next:
                                continue  # already delivered before a reconnect
                            self._next = pb.sequence + 1
                            yield event_from_pb(pb)
                    elif kind == "heartbeat":
                        hb = resp.heartbeat
                        self._next = max(self._next or 0, hb.resume_sequence)
                        if self._heartbeats:
                            yield EventHeartbeat(
                                hb.resume_sequence, to_datetime(hb.time, hb.HasField("time"))
                            )
                return
            except grpc.RpcError as err:
                if self._closed.is_set():
                    return
                failure = from_rpc_error(err)
            finally:
                self._call.cancel()
            self._recover(failure)

    def _status(self, status: str, resp: events_pb2.SubscribeResponse) -> None:
        if self._on_status is None:
            return
        if resp.HasField("event"):
            self._on_status(status, resp.event.sequence)
        elif resp.HasField("batch") and resp.batch.events:
            self._on_status(status, resp.batch.events[0].sequence)
        else:
            self._on_status(status, max(self._next or 0, resp.heartbeat.resume_sequence))

    def _recover(self, exc: VoltorchError) -> None:
        """Decide how to continue after a failed stream: raise, or wait and let the loop reconnect."""
        if not self._resume or exc.code not in _TRANSIENT:
            raise exc
        resume = exc.metadata.get("resume_sequence")
        if resume is not None:
            self._next = max(self._next or 0, int(resume))
        self.reconnects += 1
        if exc.reason == "SUBSCRIBER_OVERFLOW":
            return  # the server is fine, this consumer was slow: continue at once from the log
        if not self._away:
            self._away = True
            if self._on_status is not None:
                self._on_status("reconnecting", self._next)
        delay = self._backoff.next_delay()
        if delay is None:
            raise exc
        self._closed.wait(delay)


class EventsClient:
    def __init__(self, stub: events_pb2_grpc.EventServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    def publish(
        self,
        type: str,
        data: Any = None,
        *,
        source: str = "",
        target: str = "",
        correlation_id: str = "",
        causation_id: str = "",
        priority: Priority | int | str | None = None,
        id: str = "",
        traceparent: str = "",
        tracestate: str = "",
    ) -> PublishResult:
        """Append one event; it is durable when this returns. With `id`, publishing is idempotent."""
        ev = NewEvent(
            type, data, source, target, correlation_id, causation_id, priority, id, traceparent, tracestate
        )
        resp = call(self.stub.Publish, events_pb2.PublishRequest(event=_event_pb(ev)), timeout=self.timeout)
        return PublishResult(
            resp.sequence, resp.id, to_datetime(resp.time, resp.HasField("time")), resp.duplicate
        )

    def publish_batch(self, events: Sequence[NewEvent]) -> list[PublishResult]:
        """Append up to 1000 events atomically (all or none), with consecutive sequences in order."""
        req = events_pb2.PublishBatchRequest(events=[_event_pb(e) for e in events])
        resp = call(self.stub.PublishBatch, req, timeout=self.timeout)
        return [receipt_from_pb(r) for r in resp.receipts]

    def publisher(self, *, max_pending: int = 1000) -> Publisher:
        """A Publisher: many events over one stream, `publish(...)` returning a Future of each one's
        PublishResult (set once durable). Cheaper per event than publish() for a steady flow; see
        Publisher. Use it in a `with` block (leaving it waits for every answer)."""
        from ._publisher import Publisher

        return Publisher(self.stub, max_pending=max_pending)

    def subscribe(
        self,
        types: str | Sequence[str] = (),
        *,
        source: str = "",
        target: str = "",
        correlation_id: str = "",
        min_priority: Priority | int | str | None = None,
        trace_id: str = "",
        from_sequence: int | None = None,
        from_time: datetime | float | None = None,
        heartbeat_interval: float | timedelta | None = None,
        heartbeats: bool = False,
        resume: bool = True,
        reconnect_timeout: float | None = 60.0,
        on_status: Callable[[str, int | None], None] | None = None,
    ) -> Subscription:
        """Events matching the filter: replayed from `from_sequence` / `from_time`, then live.

        With neither, only events published after the subscription is established. `types` are
        globs ("workflow.*", "*.failed"). With `heartbeats=True` the iterator also yields
        EventHeartbeat items (the first one says the subscription is established). With resume=True
        transient failures reconnect (for up to `reconnect_timeout` s without progress) and continue
        exactly after the last delivered event (None: keep trying for ever); `on_status` hears of it
        ("reconnecting" / "resumed", with the sequence it continues from).
        """
        if from_sequence is not None and from_time is not None:
            raise ValueError("give from_sequence or from_time, not both")
        return Subscription(
            self.stub,
            _filter(types, source, target, correlation_id, min_priority, trace_id),
            from_sequence=from_sequence,
            from_time=from_time,
            heartbeat_interval=heartbeat_interval,
            heartbeats=heartbeats,
            resume=resume,
            reconnect_timeout=reconnect_timeout,
            on_status=on_status,
        )

    def list_page(
        self,
        types: str | Sequence[str] = (),
        *,
        source: str = "",
        target: str = "",
        correlation_id: str = "",
        min_priority: Priority | int | str | None = None,
        trace_id: str = "",
        descending: bool = False,
        start_sequence: int = 0,
        end_sequence: int = 0,
        start_time: datetime | float | None = None,
        end_time: datetime | float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> EventPage:
        req = events_pb2.ListEventsRequest(
            filter=_filter(types, source, target, correlation_id, min_priority, trace_id),
            page_size=page_size,
            page_token=page_token,
            order=events_pb2.EVENT_ORDER_DESCENDING if descending else events_pb2.EVENT_ORDER_ASCENDING,
            start_sequence=start_sequence,
            end_sequence=end_sequence,
        )
        if start_time is not None:
            req.start_time.CopyFrom(to_timestamp(start_time))
        if end_time is not None:
            req.end_time.CopyFrom(to_timestamp(end_time))
        resp = call(self.stub.ListEvents, req, timeout=self.timeout)
        return EventPage([event_from_pb(e) for e in resp.events], resp.next_page_token, resp.head_sequence)

    def list(
        self,
        types: str | Sequence[str] = (),
        *,
        source: str = "",
        target: str = "",
        correlation_id: str = "",
        min_priority: Priority | int | str | None = None,
        trace_id: str = "",
        descending: bool = False,
        start_sequence: int = 0,
        end_sequence: int = 0,
        start_time: datetime | float | None = None,
        end_time: datetime | float | None = None,
        page_size: int = 0,
    ) -> Iterator[Event]:
        """Every matching event in the log (oldest first unless descending), fetched page by page."""

        def fetch(token: str) -> tuple[list[Event], str]:
            page = self.list_page(
                types,
                source=source,
                target=target,
                correlation_id=correlation_id,
                min_priority=min_priority,
                trace_id=trace_id,
                descending=descending,
                start_sequence=start_sequence,
                end_sequence=end_sequence,
                start_time=start_time,
                end_time=end_time,
                page_size=page_size,
                page_token=token,
            )
            return page.events, page.next_page_token

        return pages(fetch)

    def correlation(self, correlation_id: str, *, max_events: int = 0) -> Correlation:
        """The events sharing a correlation id, causes before effects, with their causation links."""
        resp = call(
            self.stub.GetCorrelation,
            events_pb2.GetCorrelationRequest(correlation_id=correlation_id, max_events=max_events),
            timeout=self.timeout,
        )
        nodes = tuple(
            CorrelationNode(event_from_pb(n.event), n.parent_id, tuple(n.child_ids), n.depth)
            for n in resp.nodes
        )
        return Correlation(correlation_id, nodes, tuple(resp.root_ids), resp.truncated)
