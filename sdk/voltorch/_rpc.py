"""Calling the stubs: default deadlines, typed errors, page iteration, resumable streams."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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


# The max_batch the SDK's stream iterators ask for (Subscribe, Watch, WatchExecution): the server sends
# what is ready in one message, and the iterators yield its items one by one, so callers see no batches.
STREAM_BATCH = 500


def stream(
    method: Callable[..., Any],
    request: Any,
    *,
    timeout: float | None = None,
    metadata: Metadata | None = None,
) -> Iterator[Any]:
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


def pages(fetch: Callable[[str], tuple[list[T], str]]) -> Iterator[T]:
    """Yield every item across pages; fetch(page_token) returns (items, next_page_token)."""
    token = ""
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return
