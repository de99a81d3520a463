"""One thin gRPC adapter per service. Each module exposes register(server, runtime); the interceptors
(telemetry, auth, stream limits, error status with request decoding and checks) wrap them all."""

from . import coordination, events, orchestrator, state, workflows
from ._auth import AuthInterceptor, allowed, anonymous_calls, parse_tokens
from ._health import HealthServicer
from ._inbox import Inbox
from ._limits import StreamLimitInterceptor
from ._requests import RequestDecoding, check_request
from ._status import ErrorInterceptor
from ._streams import Coalescing
from ._tracing import telemetry_interceptor

MODULES = [state, events, coordination, orchestrator, workflows]

__all__ = [
    "MODULES",
    "AuthInterceptor",
    "Coalescing",
    "ErrorInterceptor",
    "HealthServicer",
    "Inbox",
    "RequestDecoding",
    "StreamLimitInterceptor",
    "allowed",
    "anonymous_calls",
    "check_request",
    "parse_tokens",
    "telemetry_interceptor",
]
