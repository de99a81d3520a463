"""Identifiers: a short kind prefix plus a time-ordered random part, so ids sort by creation."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1000:014x}{os.urandom(5).hex()}"
