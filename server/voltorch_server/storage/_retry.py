"""Transactions the database rolled back because they lost to a concurrent one are run again.

PostgreSQL aborts a transaction with a serialization failure or a deadlock when it conflicts with a
concurrent one; everything it did is rolled back, so running its body again from the start is safe and
usually succeeds. voltorch's own writers take their row locks in one order and cannot deadlock among
themselves, but any other session on the database (a migration, an operator's script, another
program) can. Only a body that can be re-run is retried: the group-commit batch (its operations only
stage rows in memory until they are written, see `_group_commit`) or a callable given to `retrying`.
A plain `with db.write()` block is the caller's code and cannot be; there the error stays Aborted
(CONCURRENT_WRITER), which the client retries. After-commit hooks belong to their transaction: a
rolled-back attempt's never run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import Aborted

log = logging.getLogger("voltorch.db")

T = TypeVar("T")

ATTEMPTS = 6  # the first run and five more
BASE_DELAY = 0.002  # seconds; doubled per attempt, "full jitter" (a random wait up to the cap)
MAX_DELAY = 0.1


class TransactionConflict(Aborted):
    """The database rolled the transaction back for conflicting with a concurrent one (serialization
    failure, deadlock): running it again may succeed. Aborted (CONCURRENT_WRITER) once retries run out."""


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: random, so that the conflicting parties part."""
    return random.uniform(0.0, min(MAX_DELAY, BASE_DELAY * (2**attempt)))


def retrying(
    body: Callable[[], T], *, attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep
) -> T:
    """body(), run again (after a jittered backoff) while it raises TransactionConflict, at most
    `attempts` times in all; the last attempt's error is raised."""
    for attempt in range(attempts - 1):
        try:
            return body()
        except TransactionConflict as exc:
            delay = backoff(attempt)
            log.info("transaction conflicted (%s); retrying in %.1f ms", exc.message, delay * 1e3)
            sleep(delay)
    return body()
