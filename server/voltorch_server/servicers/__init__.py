"""One thin gRPC adapter per service. Each module exposes register(server, runtime); the interceptors
(auth, stream limits, error status, telemetry) wrap them all."""

from . import coordination, events, orchestrator, state, workflows
from ._auth import AuthInterceptor, allowed, parse_tokens
from ._limits import StreamLimitInterceptor
from ._status import ErrorInterceptor
from ._tracing import telemetry_interceptor

MODULES = [state, events, coordination, orchestrator, workflows]

__all__ = [
    "MODULES",
    "AuthInterceptor",
    "ErrorInterceptor",
    "StreamLimitInterceptor",
    "allowed",
    "parse_tokens",
    "telemetry_interceptor",
]
