"""Reading a client stream's requests ahead on a thread of their own, taken by the handler in groups."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ._streams import POLL_SECONDS


class Inbox:
    """A client stream's requests, read on a thread of their own, taken in groups by the handler: what
    arrived while the handler worked on the last group is the next one (a publisher's stream commits
    each group at once). Requests weigh `weight(request)` (1 each by default): at most `limit` in weight
    wait (past that the reader stops reading and grpc's flow control holds the client back)."""

    def __init__(
        self, requests: Iterator[Any], limit: int, name: str, weight: Callable[[Any], int] | None = None
    ):
        self._items: list[Any] = []
        self._weights: list[int] = []
        self._held = 0  # the weight waiting
        self._weight = weight
        self._limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False  # the handler waits for requests (the reader then wakes it)
        self._ended = False  # the client half-closed, went away, or the handler left
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(requests,), name=name, daemon=True)
        self._thread.start()

    def _read(self, requests: Iterator[Any]) -> None:
        cond = self._cond
        try:
            weight = self._weight
            for req in requests:
                w = 1 if weight is None else weight(req)
                with cond:
                    while self._held >= self._limit and not self._ended:
                        cond.wait(POLL_SECONDS)
                    if self._ended:
                        return
                    self._items.append(req)
                    self._weights.append(w)
                    self._held += w
                    if self._waiting:
                        cond.notify_all()
        except grpc.RpcError:
            pass  # the client went away: the handler notices it on its context
        except BaseException as exc:  # a request that failed decoding: the handler raises it
            self._failed = exc
        finally:
            with cond:
                self._ended = True
                cond.notify_all()

    def take(self, most: int, timeout: float) -> list[Any] | None:
        """The waiting requests, up to `most` in weight (at least one), waiting up to `timeout` for one
        ([] if none came); None once the client's stream ended and every request was taken."""
        cond = self._cond
        with cond:
            if not self._items and not self._ended:
                self._waiting = True
                cond.wait(timeout)
                self._waiting = False
            if not self._items:
                if self._failed is not None:
                    raise self._failed
                return None if self._ended else []
            full = self._held >= self._limit
            n, total = 0, 0
            for w in self._weights:
                if n and total + w > most:
                    break
                n, total = n + 1, total + w
            items, self._items = self._items[:n], self._items[n:]
            del self._weights[:n]
            self._held -= total
            if full:
                cond.notify_all()  # the reader waits for room
            return items

    def close(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()
