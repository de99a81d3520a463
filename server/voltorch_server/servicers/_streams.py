"""Running a Follower as a gRPC server stream: notice cancelled clients, end overflowed streams clearly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from ..components import Closed, Follower, Overflow
from ..errors import ResourceExhausted, Unavailable

T = TypeVar("T")

POLL_SECONDS = 0.25  # how soon a stream notices a cancelled client or a stopping server


def pump(
    follower: Follower[T],
    context: grpc.ServicerContext,
    render: Callable[[T], Any],
    *,
    resume_point: Callable[[int], tuple[str, int]],
    stop: Callable[[T], bool] | None = None,
    idle: Callable[[], Any | None] | None = None,
) -> Iterator[Any]:
    """Yield render(item) for each followed item until the client goes away.

    resume_point(position) names where a client should resume, as (field name, value), for the
    status that ends an overflowed or server-closed stream. idle() is called whenever no item came
    for POLL_SECONDS; a message it returns (e.g. a heartbeat) is sent.
    """
    take = getattr(follower, "take", None) or _one_at_a_time(follower)  # get()-only wrappers too
    try:
        while True:
            items = take(timeout=POLL_SECONDS)  # a replayed batch at once: one call per batch
            if not items:
                # Only a quiet stream needs to look: grpc stops pulling items from a cancelled one.
                if not context.is_active():
                    return
                if idle is not None:
                    msg = idle()
                    if msg is not None:
                        yield msg
                continue
            if stop is None:
                for item in items:
                    yield render(item)
                continue
            for item in items:
                yield render(item)
                if stop(item):
                    return
    except Overflow as exc:
        name, value = resume_point(exc.resume_from)
        raise ResourceExhausted(
            f"subscriber fell behind its buffer; resume with {name}={value} to lose nothing",
            reason="SUBSCRIBER_OVERFLOW",
            metadata={name: str(value)},
        ) from None
    except Closed as exc:
        name, value = resume_point(exc.resume_from)
        raise Unavailable(
            f"stream closed by the server (restart or shutdown); resume with {name}={value}",
            reason="STREAM_CLOSED",
            metadata={name: str(value)},
        ) from None
    finally:
        follower.close()


def _one_at_a_time(follower: Any) -> Callable[..., list[Any]]:
    """take() for a follower-like object that only has get()."""

    def take(timeout: float | None = None) -> list[Any]:
        item = follower.get(timeout)
        return [] if item is None else [item]

    return take
