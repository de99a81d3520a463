"""One bounded poll for tests that wait on server state no stream reports (a schedule's cursor, a row after a
restart): the condition synchronises, the short pause between looks only spares the CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

WAIT = 30.0


def until(predicate: Callable[[], T], timeout: float = WAIT, why: Callable[[], object] = lambda: "") -> T:
    """The predicate's first truthy value; AssertionError (with `why()`, what the test saw) when it has none
    within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # bounded: between looks at a condition, never instead of one
    raise AssertionError(f"condition not met in {timeout:g} s {why()}".rstrip())
