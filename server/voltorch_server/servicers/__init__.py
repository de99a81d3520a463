"""One thin gRPC adapter per service. Each module exposes register(server, runtime)."""

from . import state

MODULES = [state]

__all__ = ["MODULES"]
