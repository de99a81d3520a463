"""The server process's heap after start-up: frozen out of the garbage collector's full collections.

Start-up leaves ~110k objects that live as long as the process (modules, classes, protobuf descriptors,
grpc and OpenTelemetry state). Every full (generation 2) collection walked them all: 50–80 ms with the
GIL held, every few seconds under load, during which no stream sent and no call was answered; that pause
was the tail of publish → deliver latency (issue 16). `gc.freeze()` moves them to the permanent
generation, which collections skip; what the server allocates afterwards is collected as before.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect what start-up left as garbage, then freeze the rest; returns the objects frozen. Call once
    the server is serving, from the process's entry point (not per server: a test process starts many)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
