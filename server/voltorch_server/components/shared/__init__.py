"""What the component packages share: the lifecycle base (Component), replay-then-follow (Broadcaster,
Follower), JSON paths, page tokens and sizes, the aging priority queue, the timer thread (TimerQueue) and
retry delays (doubling), a caller's reason text. Not a concept of its own: a package imports these from here, never from the
modules."""

from ._base import Component
from ._follow import Broadcaster, Closed, Follower, Overflow
from ._jsonpath import PathError, parse_path, resolve
from ._paging import (
    PAGE_BYTES,
    decode_token,
    encode_token,
    fitting,
    is_count,
    is_pair,
    page_size,
    row_bytes,
    wire_bytes,
)
from ._queue import AgingQueue
from ._reason import MAX_REASON, reason_text
from ._timers import Timer, TimerQueue, doubling

__all__ = [
    "MAX_REASON",
    "PAGE_BYTES",
    "AgingQueue",
    "Broadcaster",
    "Closed",
    "Component",
    "Follower",
    "Overflow",
    "PathError",
    "Timer",
    "TimerQueue",
    "decode_token",
    "doubling",
    "encode_token",
    "is_count",
    "is_pair",
    "fitting",
    "page_size",
    "row_bytes",
    "wire_bytes",
    "parse_path",
    "reason_text",
    "resolve",
]
