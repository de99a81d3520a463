"""A clock the test moves by hand (TTL expiry without waiting)."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
