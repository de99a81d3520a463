"""Identifiers: a short kind prefix plus a time-ordered random part, so ids sort by creation.

The random part comes from `random` (seeded from the OS at start-up and again in every forked child), not
from `os.urandom`: these ids name things, they guard nothing (tokens use `secrets`), and `os.urandom` is a
system call that releases the GIL — a thread switch per id on a busy server, where a workflow step mints
about eight (its events, its coordination)."""

from __future__ import annotations

import random
import time

_bits = random.getrandbits


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1000:014x}{_bits(40):010x}"
