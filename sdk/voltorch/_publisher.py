"""client.events.publisher(): many events over one PublishStream call, each answered once durable.

A unary Publish costs a call (a new stream, its request, its status) per event; a publisher's stream sends
what is queued in one message (one event when the publisher is caught up), and the server commits what
arrived together in one transaction and answers it in one message. The
sync Publisher sends from a grpc thread and reads answers on one of its own; AsyncPublisher does both on
the caller's asyncio loop (grpc.aio).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import grpc

from voltorch.v1 import events_pb2, events_pb2_grpc

from ._events import NewEvent, _event_pb
from .errors import CancelledError, InvalidArgumentError, UnavailableError, VoltorchError, from_rpc_error
from .wire import FieldViolation, PublishError, PublishResult, publish_outcome_from_pb

DEFAULT_MAX_PENDING = 1000  # unanswered events a publisher allows before publish() waits
REQUEST_EVENTS = 500  # most queued events sent in one request (the server takes up to 1000)
REQUEST_BYTES = 1 << 20  # a request stops growing past this (a larger event goes alone)
_END = object()


def refused(error: PublishError) -> InvalidArgumentError:
    """The exception a refused event's future raises (the stream goes on)."""
    return InvalidArgumentError(
        error.message,
        reason=error.reason,
        field_violations=[FieldViolation(error.field, error.message)],
    )


def _ended_early(unanswered: int) -> UnavailableError:
    return UnavailableError(
        f"the publish stream ended with {unanswered} event(s) unanswered: they may or may not be in the log "
        "(republish them with their ids to be sure)",
        reason="STREAM_CLOSED",
    )


def _pack(
    first: events_pb2.Event, get_nowait: Callable[[], Any], empty: type[Exception]
) -> tuple[events_pb2.PublishStreamRequest, Any]:
    """`first` and what was queued meanwhile (`get_nowait` until `empty`) as one request: one message, one
    hand-off in the server. Also returns what was taken but not sent (the next request's first, or _END)."""
    events, size = [first], first.ByteSize()
    more: Any = None
    while len(events) < REQUEST_EVENTS:
        try:
            more = get_nowait()
        except empty:
            return events_pb2.PublishStreamRequest(events=events), None
        if more is _END:
            break
        size += more.ByteSize()
        if size > REQUEST_BYTES:
            break  # `more` opens the next request
        events.append(more)
        more = None
    return events_pb2.PublishStreamRequest(events=events), more


def _resolve(
    fut: Future[PublishResult] | asyncio.Future[PublishResult], answer: events_pb2.PublishResult
) -> None:
    """Settle an event's future from its answer (one its caller cancelled meanwhile stays cancelled)."""
    if fut.done():
        return
    outcome = publish_outcome_from_pb(answer)
    if isinstance(outcome, PublishError):
        fut.set_exception(refused(outcome))
    else:
        fut.set_result(outcome)


def _reader_failed(exc: BaseException) -> VoltorchError:
    return VoltorchError(f"the publisher stopped reading answers: {exc!r}")


class Publisher:
    """Publishes events over one stream. `publish(...)` returns at once with a Future of the event's
    PublishResult, set once it is durable; events are appended in the order published. A refused event's
    future raises InvalidArgumentError (naming the field) and the stream goes on. If the stream fails
    (server stopping, network), every unanswered future raises that error (they may or may not have been
    appended: give events ids to republish safely) and later publish() calls raise it at once.
    At most `max_pending` events wait for their answer; publish() blocks for room beyond that. A future
    cannot be cancelled (the event is already on its way; `cancel()` returns False): cancel the publisher.
    `close()` (or leaving the `with` block) waits for every answer and ends the call.
    """

    def __init__(
        self,
        stub: events_pb2_grpc.EventServiceStub,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        metadata: Sequence[tuple[str, str]] | None = None,
    ):
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: deque[Future[PublishResult]] = deque()
        self._lock = threading.Lock()
        self._room = threading.BoundedSemaphore(max_pending)
        self._failure: BaseException | None = None  # set once the stream has ended
        self._closing = False
        self._call = stub.PublishStream(self._requests(), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name="voltorch-publisher", daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[events_pb2.PublishStreamRequest]:
        outbox = self._outbox
        more: Any = None  # taken but not sent yet
        while True:
            first = outbox.get() if more is None else more
            if first is _END:
                return
            request, more = _pack(first, outbox.get_nowait, queue.Empty)
            yield request

    def publish(
        self,
        type: str,
        data: Any = None,
        *,
        source: str = "",
        target: str = "",
        correlation_id: str = "",
        causation_id: str = "",
        priority: Any = None,
        id: str = "",
        traceparent: str = "",
        tracestate: str = "",
    ) -> Future[PublishResult]:
        """Queue one event (the arguments of EventsClient.publish); the future has its PublishResult."""
        return self.publish_event(
            NewEvent(
                type,
                data,
                source,
                target,
                correlation_id,
                causation_id,
                priority,
                id,
                traceparent,
                tracestate,
            )
        )

    def publish_event(self, event: NewEvent) -> Future[PublishResult]:
        req = _event_pb(event)
        self._room.acquire()
        fut: Future[PublishResult] = Future()
        fut.set_running_or_notify_cancel()  # the event is on its way: cancel() returns False, it is answered
        with self._lock:
            if self._failure is not None or self._closing:
                self._room.release()
                raise self._failure or ValueError("the publisher is closed")
            self._pending.append(fut)  # in the order of the requests: answers come in that order
            self._outbox.put(req)
        return fut

    def _read(self) -> None:
        failure: VoltorchError | None = None
        try:
            for resp in self._call:
                for r in resp.results:
                    with self._lock:
                        fut = self._pending.popleft()
                    self._room.release()
                    _resolve(fut, r)
        except grpc.RpcError as err:
            failure = from_rpc_error(err)
        except IndexError:  # more answers than requests: a server bug, never silently
            failure = VoltorchError("the server answered more events than were published")
        except Exception as exc:  # whatever stops the reader, no future is left hanging
            failure = _reader_failed(exc)
            self._call.cancel()
        with self._lock:
            left = list(self._pending)
            self._pending.clear()
            if failure is None and left:
                failure = _ended_early(len(left))
            if failure is not None and self._closing and failure.code == grpc.StatusCode.CANCELLED:
                failure = CancelledError("the publisher was cancelled before the event was answered")
            self._failure = failure or ValueError("the publisher is closed")
        self._outbox.put(_END)  # grpc's thread sending the requests stops waiting for more
        for fut in left:
            if not fut.done():
                fut.set_exception(self._failure)
            self._room.release()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event published so far is answered (raises TimeoutError after `timeout`)."""
        with self._lock:
            waiting = list(self._pending)
        for fut in waiting:
            fut.exception(timeout)  # an answer or an error: either way it is done

    def close(self, timeout: float | None = None) -> None:
        """Half-close the stream once every queued event is sent, and wait for every answer."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._outbox.put(_END)
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise TimeoutError(f"the publisher's answers did not all come within {timeout} s")

    def cancel(self) -> None:
        """End the call now: unanswered events' futures raise CancelledError (they may be in the log)."""
        with self._lock:
            self._closing = True
        self._call.cancel()
        self._outbox.put(_END)
        self._reader.join()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPublisher:
    """The Publisher on an asyncio loop, over a grpc.aio channel (`grpc.aio.insecure_channel(target)`, or
    a secure one): `await publisher.publish(...)` queues the event and returns an asyncio Future of its
    PublishResult (await that for the answer); the same order, errors and bound as Publisher. Use it as
    `async with AsyncPublisher(channel) as p:` (close() waits for every answer)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        metadata: Sequence[tuple[str, str]] | None = None,
    ):
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._stub = events_pb2_grpc.EventServiceStub(channel)
        self._metadata = metadata
        self._pending: deque[asyncio.Future[PublishResult]] = deque()
        self._room = asyncio.Semaphore(max_pending)
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._failure: BaseException | None = None
        self._closing = False
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None

    def _start(self) -> None:
        if self._call is None:
            self._call = self._stub.PublishStream(self._requests(), metadata=self._metadata)
            self._reader = asyncio.ensure_future(self._read())

    async def _requests(self) -> AsyncIterator[events_pb2.PublishStreamRequest]:
        outbox = self._outbox
        more: Any = None  # taken but not sent yet
        while True:
            first = await outbox.get() if more is None else more
            if first is _END:
                return
            request, more = _pack(first, outbox.get_nowait, asyncio.QueueEmpty)
            yield request

    async def publish(self, type: str, data: Any = None, **fields: Any) -> asyncio.Future[PublishResult]:
        """Queue one event (the arguments of EventsClient.publish); waits only for room."""
        return await self.publish_event(NewEvent(type, data, **fields))

    async def publish_event(self, event: NewEvent) -> asyncio.Future[PublishResult]:
        req = _event_pb(event)
        await self._room.acquire()
        if self._failure is not None or self._closing:
            self._room.release()
            raise self._failure or ValueError("the publisher is closed")
        self._start()
        fut: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()
        self._pending.append(fut)
        self._outbox.put_nowait(req)
        return fut

    async def _read(self) -> None:
        failure: BaseException | None = None
        try:
            async for resp in self._call:
                for r in resp.results:
                    fut = self._pending.popleft()
                    self._room.release()
                    _resolve(fut, r)
        except grpc.RpcError as err:
            failure = from_rpc_error(err)
            if self._closing and failure.code == grpc.StatusCode.CANCELLED:
                failure = CancelledError("the publisher was cancelled before the event was answered")
        except asyncio.CancelledError:
            failure = CancelledError("the publisher was cancelled before the event was answered")
        except IndexError:
            failure = VoltorchError("the server answered more events than were published")
        except Exception as exc:  # whatever stops the reader, no future is left hanging
            failure = _reader_failed(exc)
            self._call.cancel()
        left = list(self._pending)
        self._pending.clear()
        if failure is None and left:
            failure = _ended_early(len(left))
        self._failure = failure or ValueError("the publisher is closed")
        for fut in left:
            if not fut.done():
                fut.set_exception(self._failure)
            self._room.release()
        self._outbox.put_nowait(_END)  # grpc.aio's task sending the requests stops waiting for more

    async def flush(self) -> None:
        """Wait until every event published so far is answered."""
        await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        """Half-close the stream once every queued event is sent, and wait for every answer."""
        if self._closing:
            return
        self._closing = True
        if self._call is None:
            return
        self._outbox.put_nowait(_END)
        assert self._reader is not None
        await self._reader

    async def cancel(self) -> None:
        """End the call now: unanswered events' futures raise CancelledError (they may be in the log)."""
        self._closing = True
        if self._call is not None:
            self._call.cancel()
            assert self._reader is not None
            await self._reader

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
