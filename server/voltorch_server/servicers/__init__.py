"""One thin gRPC adapter per service. Each module exposes register(server, runtime)."""

from . import coordination, events, orchestrator, state, workflows

MODULES = [state, events, coordination, orchestrator, workflows]

__all__ = ["MODULES"]
