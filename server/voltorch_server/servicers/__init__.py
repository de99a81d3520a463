"""One thin gRPC adapter per service. Each module exposes register(server, runtime)."""

from . import events, state

MODULES = [state, events]

__all__ = ["MODULES"]
