"""Server-sent events from a Follower: the same replay-then-follow that serves Subscribe and WatchExecution.

Each message carries its event sequence as the SSE `id`, so a browser that reconnects sends it back as
`Last-Event-ID` and resumes after it: nothing lost, nothing repeated. An overflowed or server-closed
follower ends the response; the client reconnects from its last id (the log has everything).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..components import Closed, Overflow
from ..components.events import Event
from ._json import dumps

POLL_SECONDS = 0.25  # how soon a stream notices a stopping console
KEEPALIVE_SECONDS = 15.0  # a comment line on a quiet stream: proxies keep it open, a gone client is noticed


def frame(event: Event) -> bytes:
    return b"id: %d\nevent: event\ndata: %s\n\n" % (event.sequence, dumps(event))


class Sink(Protocol):
    """Where the stream is written: the request handler's `wfile`."""

    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> object: ...


def stream(
    out: Sink,
    follower: Any,
    stopping: threading.Event,
    *,
    stop: Callable[[Event], bool] | None = None,
) -> None:
    """Write each followed event to `out` until the client leaves, the console stops, or `stop(event)`."""
    take = getattr(follower, "take", None)
    last_write = time.monotonic()
    try:
        out.write(b"retry: 1000\n: stream open\n\n")
        out.flush()
        while not stopping.is_set():
            if take is not None:
                items = take(timeout=POLL_SECONDS)
            else:
                one = follower.get(POLL_SECONDS)
                items = [] if one is None else [one]
            if not items:
                if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                    out.write(b": keepalive\n\n")
                    out.flush()
                    last_write = time.monotonic()
                continue
            # take() hands over everything ready at once: nothing after the stopping event is written.
            end = next((i for i, e in enumerate(items) if stop(e)), None) if stop is not None else None
            if end is not None:
                items = items[: end + 1]
            out.write(b"".join(frame(e) for e in items))
            out.flush()
            last_write = time.monotonic()
            if end is not None:
                out.write(b"event: end\ndata: {}\n\n")
                out.flush()
                return
    except (Overflow, Closed):
        return  # the client reconnects with Last-Event-ID and replays from the log
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        follower.close()
