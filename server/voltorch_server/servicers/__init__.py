"""One thin gRPC adapter per service. Each module exposes register(server, runtime)."""

from . import events, orchestrator, state

MODULES = [state, events, orchestrator]

__all__ = ["MODULES"]
