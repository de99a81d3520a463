"""Calling the stubs: default deadlines, typed errors, page iteration, resumable streams."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from .errors import from_rpc_error

T = TypeVar("T")
Metadata = Sequence[tuple[str, str]]


def call(
    method: Callable[..., Any], request: Any, *, timeout: float | None, metadata: Metadata | None = None
) -> Any:
    """Invoke a unary stub method, raising a typed VoltorchError on failure."""
    try:
        return method(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None


def new_request_id(given: str) -> str:
    """The caller's idempotency key, else a fresh one: the channel retries these writes after UNAVAILABLE
    (on another replica), which must not start, queue or deliver anything twice."""
    return given or f"sdk-{uuid.uuid4().hex}"


# The max_batch the SDK's stream iterators ask for (Subscribe, Watch, WatchExecution): the server sends
# what is ready in one message, and the iterators yield its items one by one, so callers see no batches.
STREAM_BATCH = 500


def stream(
    method: Callable[..., Any],
    request: Any,
    *,
    timeout: float | None = None,
    metadata: Metadata | None = None,
) -> Generator[Any, None, None]:
    """Iterate a server stream, raising typed errors; closing the iterator cancels the call."""
    call_ = method(request, timeout=timeout, metadata=metadata)
    try:
        yield from call_
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED and not call_.is_active():
            return
        raise from_rpc_error(err) from None
    finally:
        call_.cancel()


# How long the stream iterators keep reconnecting without progress when their server went away without a
# resume point (killed): long enough for a restart, or for a cluster's channel to move to another replica.
RECONNECT_TIMEOUT = 60.0


@dataclass
class Reconnect:
    """Backoff between reconnection attempts, given up after `timeout` seconds without progress."""

    timeout: float | None
    initial: float = 0.05
    cap: float = 2.0
    delay: float = field(default=0.05, init=False)
    waited: float = field(default=0.0, init=False)

    def progress(self) -> None:
        self.delay, self.waited = self.initial, 0.0

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if self.timeout is not None and self.waited >= self.timeout:
            return None
        d = self.delay
        self.waited += d
        self.delay = min(self.cap, self.delay * 2)
        return d


def pages(fetch: Callable[[str], tuple[list[T], str]]) -> Iterator[T]:
    """Yield every item across pages; fetch(page_token) returns (items, next_page_token)."""
    token = ""
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return
