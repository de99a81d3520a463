"""One thin gRPC adapter per service. Each module exposes register(server, runtime)."""

from . import coordination, events, orchestrator, state

MODULES = [state, events, coordination, orchestrator]

__all__ = ["MODULES"]
