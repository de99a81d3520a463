"""Group commit: concurrent writers share one transaction and one COMMIT.

Why: a COMMIT writes every page the transaction touched to the WAL (two syscalls a page) and each sqlite
call releases the GIL, so one transaction per write made every write pay for all of that alone. Here
callers queue their operation; the caller at the head of the queue (the leader: no extra thread, and a
lone caller simply runs its own write at once) opens the transaction and takes what is queued through
`run(take)`: `take()` hands over the operations queued so far (the leader's own first) and can be called
again while the transaction is open — every sqlite call lets other threads run, so writers that arrive
meanwhile join the same COMMIT. Each caller then gets its own result or its own error, and the next
queued caller leads the next transaction. Batches grow with the load and stay at one write when there
is none; they are bounded in operations and in weight (about the bytes written).

A batch the database rolled back for conflicting with a concurrent transaction (`_retry`) is run again,
with the same operations first: `run` only stages them until it writes, so re-running is safe, and each
operation's result or error is the one of the attempt that committed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

from ..handoffs import handed_off
from ._retry import retrying

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


Take = Callable[[], list[Pending]]


class GroupCommit:
    """Serialises operations into batches. `run(take)` writes every operation it takes atomically (in the
    order taken), setting each one's `result` or `error`, or raises: then every operation it took fails
    with that error (the leader's own too, should it raise before taking anything)."""

    def __init__(
        self,
        run: Callable[[Take], None],
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
        batch: list[Pending] = []  # taken so far: the front of the queue
        weight = 0
        queue = self._queue

        def take() -> list[Pending]:
            nonlocal weight
            new: list[Pending] = []
            if len(queue) == len(batch):  # nobody new (callers only ever append: a safe peek)
                return new
            with self._mutex:
                for q in islice(queue, len(batch), None):
                    if (batch or new) and (
                        len(batch) + len(new) >= self.max_batch or weight + q.weight > self.max_weight
                    ):
                        break
                    new.append(q)
                    weight += q.weight
            batch.extend(new)
            return new

        def attempt() -> None:
            again = list(batch)  # what a rolled-back attempt took: offered first, to be done afresh
            for q in again:
                q.result, q.error = None, None

            def take_again() -> list[Pending]:
                nonlocal again
                if again:
                    out, again = again, []
                    return out
                return take()

            self._run(take_again)

        try:
            retrying(attempt)
        except BaseException as exc:  # nothing of the batch was written: each of its callers hears why
            if not batch:  # it failed before taking anything: the leader's own operation fails
                take()
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
                    q._wake.release()  # type: ignore[union-attr]  # every waiter queued behind made its lock
            if following is not None:
                following._wake.release()  # type: ignore[union-attr]  # queued behind: it made its lock
            handed_off(len(batch) - 1 + (following is not None))
