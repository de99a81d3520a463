"""EventService: proto <-> EventLog."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import grpc
from voltorch import wire
from voltorch.v1 import events_pb2, events_pb2_grpc

from ..components.events import Event, EventFilter, EventLog, NewEvent, Receipt
from ..errors import InvalidArgument, Unavailable
from ._convert import duration_to_seconds, py_to_value, ts, ts_to_float, value_to_py
from ._handlers import rebuild
from ._inbox import Inbox
from ._status import error_parts
from ._streams import IDLE_SECONDS, POLL_SECONDS, Batching, Coalescing, batch_limit, pump

DEFAULT_HEARTBEAT = 30.0
MIN_HEARTBEAT = 1.0
# PublishStream: a request weighs its events, or its size in STREAM_WEIGHT_BYTES if that is more, so both the
# events and the bytes read ahead (<= ~16 MiB) and committed together (<= ~4 MiB) stay bounded.
STREAM_COMMIT = 1000  # most weight committed (and answered) together (whole requests: at least one)
STREAM_WAITING = 4000  # most weight read ahead of the commits (then HTTP/2 flow control holds the client)
STREAM_WEIGHT_BYTES = 4096
STREAM_REQUEST_EVENTS = 1000  # most events in one PublishStreamRequest


def fill_event(pb: events_pb2.Event, e: Event) -> events_pb2.Event:
    """Write e into pb in place (no nested-message copies: this runs once per delivered event)."""
    pb.sequence = e.sequence
    pb.id = e.id
    pb.type = e.type
    pb.source = e.source
    pb.target = e.target
    pb.correlation_id = e.correlation_id
    pb.causation_id = e.causation_id
    pb.priority = e.priority.pb
    pb.trace_id = e.trace_id
    pb.span_id = e.span_id
    nanos = int(e.time * 1e9)
    pb.time.seconds, pb.time.nanos = divmod(nanos, 1_000_000_000)
    if e.data is not None:
        pb.data.CopyFrom(py_to_value(e.data))
    if e.traceparent:
        pb.trace_context.traceparent = e.traceparent
        pb.trace_context.tracestate = e.tracestate
    return pb


def event_pb(e: Event) -> events_pb2.Event:
    return fill_event(events_pb2.Event(), e)


def new_event(pb: events_pb2.Event) -> NewEvent:
    return NewEvent(
        type=pb.type,
        source=pb.source,
        target=pb.target,
        data=value_to_py(pb.data) if pb.HasField("data") else None,
        correlation_id=pb.correlation_id,
        causation_id=pb.causation_id,
        priority=pb.priority,
        traceparent=pb.trace_context.traceparent,
        tracestate=pb.trace_context.tracestate,
        id=pb.id,
    )


def event_filter(pb: events_pb2.EventFilter) -> EventFilter:
    return EventFilter(
        types=tuple(pb.types),
        source=pb.source,
        target=pb.target,
        correlation_id=pb.correlation_id,
        min_priority=pb.min_priority,
        trace_id=pb.trace_id,
    )


def _receipt(r: Receipt) -> events_pb2.EventReceipt:
    return events_pb2.EventReceipt(
        sequence=r.event.sequence, id=r.event.id, time=ts(r.event.time), duplicate=r.duplicate
    )


def _stream_weight(request: events_pb2.PublishStreamRequest) -> int:
    return max(len(request.events), request.ByteSize() // STREAM_WEIGHT_BYTES, 1)


def publish_result(outcome: Receipt | InvalidArgument) -> events_pb2.PublishResult:
    """One PublishStream event's answer: its receipt, or the error that refused it."""
    if isinstance(outcome, Receipt):
        return events_pb2.PublishResult(receipt=_receipt(outcome))
    parts = error_parts(outcome)
    error = wire.publish_error_pb(parts.code, parts.reason, parts.field, parts.message)
    return events_pb2.PublishResult(error=error)


def render_event(e: Event) -> bytes:
    """The serialized SubscribeResponse carrying e (what Subscribe sends for it)."""
    resp = events_pb2.SubscribeResponse()
    fill_event(resp.event, e)
    return resp.SerializeToString()


class _Rendered:
    """Serialized SubscribeResponses by sequence: N subscribers of one event build and serialize its
    message once, and grpc sends the shared bytes as they are (see `_serialize_response`)."""

    def __init__(self, capacity: int = 8192):
        self.capacity = capacity
        # OrderedDict: evicting the oldest is O(1) (a plain dict's next(iter(d)) walks past every
        # deleted slot at its front, thousands of them once the cache is full).
        self._items: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, e: Event, head: int) -> bytes:
        """e's bytes; only events among the newest `capacity` of the log (`head` = the newest
        delivered sequence) are cached: live subscribers share those, a replay of old ones would
        only churn the cache."""
        data = self._items.get(e.sequence)
        if data is None:
            data = render_event(e)
            if e.sequence <= head - self.capacity:
                return data
            with self._lock:
                self._items[e.sequence] = data
                if len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return data


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_BATCH_TAG = b"\x1a"  # SubscribeResponse.batch: field 3, length-delimited


def combine_events(pieces: list[bytes]) -> bytes:
    """One serialized SubscribeResponse carrying a batch, from serialized single-event responses.

    A SubscribeResponse with `event` (field 1) is byte for byte an entry of EventBatch.events (field 1
    too), so a batch is the shared per-event bytes concatenated under the `batch` tag: no event is
    parsed or encoded again per subscriber."""
    body = b"".join(pieces)
    return _BATCH_TAG + _varint(len(body)) + body


def _serialize_response(msg: events_pb2.SubscribeResponse | bytes) -> bytes:
    """Subscribe's response serializer: pre-serialized events pass through, heartbeats are encoded."""
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, events: EventLog, coalescing: Coalescing | None = None):
        self.events = events
        self._render = _Rendered()
        self._coalescing = coalescing  # shared by every batched Subscribe stream (None: send at once)

    def Publish(self, request, context):
        r = self.events.publish_one(new_event(request.event), field="event")
        e = r.event
        return events_pb2.PublishResponse(
            sequence=e.sequence, id=e.id, time=ts(e.time), duplicate=r.duplicate
        )

    def PublishBatch(self, request, context):
        receipts = self.events.publish_batch([new_event(e) for e in request.events], field="events")
        return events_pb2.PublishBatchResponse(receipts=[_receipt(r) for r in receipts])

    def PublishStream(self, request_iterator, context):
        inbox = Inbox(request_iterator, STREAM_WAITING, "publish-stream", weight=_stream_weight)
        events = self.events
        publish_each = events.publish_each
        try:
            while True:
                requests = inbox.take(STREAM_COMMIT, POLL_SECONDS)
                if requests is None:
                    return  # the client half-closed and every request is answered
                if events.stopped:
                    raise Unavailable(
                        "the server is stopping: republish the unanswered events (with their ids) elsewhere"
                        " or once it is back",
                        reason="SERVER_STOPPING",
                    )
                if not requests:
                    if not context.is_active():
                        return
                    continue
                refused: InvalidArgument | None = None
                for k, r in enumerate(requests):
                    if not 1 <= len(r.events) <= STREAM_REQUEST_EVENTS:
                        refused = InvalidArgument(
                            "events",
                            f"a request carries 1..{STREAM_REQUEST_EVENTS} events (got {len(r.events)})",
                        )
                        requests = requests[:k]  # those before it are answered first
                        break
                if requests:
                    outcomes = publish_each([new_event(e) for r in requests for e in r.events], field="event")
                    yield events_pb2.PublishStreamResponse(results=[publish_result(o) for o in outcomes])
                if refused is not None:
                    raise refused
        finally:
            inbox.close()

    def Subscribe(self, request, context):
        flt = event_filter(request.filter)
        start = request.WhichOneof("start")
        interval: float | None = DEFAULT_HEARTBEAT
        if request.HasField("heartbeat_interval"):
            interval = duration_to_seconds(request.heartbeat_interval, "heartbeat_interval")
            if interval is not None and interval < MIN_HEARTBEAT:
                raise InvalidArgument(
                    "heartbeat_interval",
                    f"at least {MIN_HEARTBEAT:g} s (or zero to disable heartbeats)",
                    reason="DURATION_INVALID",
                )
        max_batch = batch_limit(request.max_batch)
        follower = self.events.subscribe(
            flt,
            from_sequence=request.from_sequence if start == "from_sequence" else None,
            from_time=ts_to_float(request.from_time) if start == "from_time" else None,
        )
        last_sent = time.monotonic()

        def heartbeat() -> events_pb2.SubscribeResponse:
            nonlocal last_sent
            last_sent = time.monotonic()
            delivered = self.events.delivered_sequence  # read before caught_up(): see _follow.Follower
            examined = max(follower.last, delivered) if follower.caught_up() else follower.last
            hb = events_pb2.SubscribeHeartbeat(resume_sequence=examined + 1, time=ts(time.time()))
            return events_pb2.SubscribeResponse(heartbeat=hb)

        def render(e: Event) -> bytes:
            nonlocal last_sent
            last_sent = time.monotonic()
            return self._render(e, self.events.delivered_sequence)

        def idle() -> events_pb2.SubscribeResponse | None:
            if interval and time.monotonic() - last_sent >= interval:
                return heartbeat()
            return None

        try:
            if interval:
                # The first heartbeat tells the client the subscription is in place and where it stands.
                yield heartbeat()
            yield from pump(
                follower,
                context,
                render,
                resume_point=lambda pos: ("resume_sequence", pos),
                idle=idle,
                batching=Batching(max_batch, combine_events, len) if max_batch else None,
                coalescing=self._coalescing,
                wait=min(interval, IDLE_SECONDS) if interval else IDLE_SECONDS,  # heartbeats come on time
            )
        finally:
            follower.close()

    def ListEvents(self, request, context):
        order = request.order
        if order not in (
            events_pb2.EVENT_ORDER_UNSPECIFIED,
            events_pb2.EVENT_ORDER_ASCENDING,
            events_pb2.EVENT_ORDER_DESCENDING,
        ):
            raise InvalidArgument("order", f"unknown order {order}", reason="ENUM_VALUE_INVALID")
        page = self.events.list(
            event_filter(request.filter),
            page_size_=request.page_size,
            page_token=request.page_token,
            descending=order == events_pb2.EVENT_ORDER_DESCENDING,
            start_sequence=request.start_sequence,
            end_sequence=request.end_sequence,
            start_time=ts_to_float(request.start_time) if request.HasField("start_time") else None,
            end_time=ts_to_float(request.end_time) if request.HasField("end_time") else None,
        )
        return events_pb2.ListEventsResponse(
            events=[event_pb(e) for e in page.events],
            next_page_token=page.next_page_token,
            head_sequence=page.head_sequence,
        )

    def GetCorrelation(self, request, context):
        c = self.events.correlation(request.correlation_id, request.max_events)
        return events_pb2.GetCorrelationResponse(
            nodes=[
                events_pb2.CorrelationNode(
                    event=event_pb(n.event), parent_id=n.parent_id, child_ids=n.child_ids, depth=n.depth
                )
                for n in c.nodes
            ],
            root_ids=c.root_ids,
            truncated=c.truncated,
        )


class _Handlers:
    """Stands in for a server to take the generated method handlers (so they stay generated)."""

    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, _handlers) -> None:
        pass

    def add_registered_method_handlers(
        self, _service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers = dict(handlers)


def register(server: grpc.Server, runtime) -> list[str]:
    name = "voltorch.v1.EventService"
    taken = _Handlers()
    config = runtime.config
    coalescing = (
        Coalescing(config.stream_message_budget, config.stream_max_coalesce)
        if config.stream_message_budget > 0
        else None
    )
    events_pb2_grpc.add_EventServiceServicer_to_server(EventServicer(runtime.events, coalescing), taken)
    handlers = taken.handlers
    handlers["Subscribe"] = rebuild(handlers["Subscribe"], response_serializer=_serialize_response)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
    return [name]
