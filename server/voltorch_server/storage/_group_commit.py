"""Group commit: concurrent writers share one transaction and one COMMIT.

Why: a write costs a handful of sqlite calls and each one releases the GIL, so with concurrent callers
every write paid several thread switches on top of its own BEGIN and COMMIT. Here callers queue their
operation; the caller at the head of the queue (the leader: no extra thread, and a lone caller simply
runs its own write at once) runs everything queued behind it, up to a bound, through `run(batch)`,
which writes the whole batch in one transaction. Each caller then gets its own result or its own error,
and the next queued caller leads the next batch. Whatever queued while a batch was being written forms
the next one, so batches grow with the load and stay at one write when there is none.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_BATCH = 64  # operations per transaction
MAX_BATCH_WEIGHT = 8 << 20  # about the bytes a batch may write (a single heavier operation still runs)


class Pending:
    """One caller's operation in the queue; `run` sets `result` or `error`."""

    __slots__ = ("op", "weight", "result", "error", "done", "_wake")

    def __init__(self, op: Any, weight: int):
        self.op = op
        self.weight = weight
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self._wake: threading.Lock | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Serialises operations into batches; `run(batch)` must write the whole batch atomically, setting
    each Pending's `result` or `error`, or raise (then every operation of the batch fails with it)."""

    def __init__(
        self,
        run: Callable[[list[Pending]], None],
        *,
        max_batch: int = MAX_BATCH,
        max_weight: int = MAX_BATCH_WEIGHT,
    ):
        self._run = run
        self.max_batch = max_batch
        self.max_weight = max_weight
        self._mutex = threading.Lock()
        self._queue: deque[Pending] = deque()  # the running batch first, then the waiting callers

    def submit(self, op: Any, weight: int = 1) -> Any:
        """Queue op, wait until its batch has committed (or failed) and return its result."""
        p = Pending(op, weight)
        with self._mutex:
            self._queue.append(p)
            leader = len(self._queue) == 1
            if not leader:
                p._wake = wake = threading.Lock()
                wake.acquire()
        if not leader:
            wake.acquire()  # released once p is done, or once p heads the queue and should lead
            if p.done:
                return p.outcome()
        self._lead(p)
        return p.outcome()

    def _lead(self, me: Pending) -> None:
        batch: list[Pending] = []
        weight = 0
        with self._mutex:
            for q in self._queue:
                if batch and (len(batch) >= self.max_batch or weight + q.weight > self.max_weight):
                    break
                batch.append(q)
                weight += q.weight
        try:
            self._run(batch)
        except BaseException as exc:  # nothing of the batch was written: each of its callers hears why
            for q in batch:
                q.result, q.error = None, exc
        finally:
            with self._mutex:
                for _ in batch:
                    self._queue.popleft()
                following = self._queue[0] if self._queue else None
            for q in batch:
                q.done = True
                if q is not me:
                    q._wake.release()  # type: ignore[union-attr]
            if following is not None:
                following._wake.release()  # type: ignore[union-attr]
