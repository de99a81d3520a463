"""Optional bearer-token authentication with roles (admin, agent, reader).

When no tokens are configured every call is allowed (the local default). With tokens, each call must
carry `authorization: Bearer <token>`; the token's role decides which methods it may call. The standard
health and reflection services stay open so probes and grpcurl work.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from ..auth import OPEN_SERVICES, allowed, parse_tokens, role_of
from ..errors import PermissionDenied, Unauthenticated
from ._handlers import rebuild
from ._status import to_status

__all__ = ["AuthInterceptor", "allowed", "anonymous_calls", "caller_role", "parse_tokens"]


def caller_role(tokens: dict[str, str], context: grpc.ServicerContext) -> str:
    """The role of the token the caller presented ('' without tokens configured or presented): recorded as
    who did something when the request names nobody (e.g. who approved)."""
    if not tokens:
        return ""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return role_of(tokens, value) or ""
    return ""


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: dict[str, str]):
        self._tokens = tokens

    def role(self, metadata) -> str | None:
        """The role of the valid bearer token in metadata; None without one."""
        for key, value in metadata or ():
            if key == "authorization":
                return role_of(self._tokens, value)
        return None

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return continuation(handler_call_details)
        role = self.role(handler_call_details.invocation_metadata)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if role is None:
            return _deny(
                handler, Unauthenticated("a valid bearer token is required (authorization: Bearer <token>)")
            )
        if not allowed(role, method):
            return _deny(handler, PermissionDenied(f"role {role!r} may not call {method}"))
        return handler


def anonymous_calls(auth: AuthInterceptor | None) -> Callable[[grpc.HandlerCallDetails], bool]:
    """Which calls are anonymous: calls to the open services (health, reflection) without a valid token
    (every such call when no tokens are configured: nobody is authenticated then)."""

    def anonymous(details: grpc.HandlerCallDetails) -> bool:
        if not details.method.startswith(OPEN_SERVICES):
            return False
        return auth is None or auth.role(details.invocation_metadata) is None

    return anonymous


def _deny(handler: grpc.RpcMethodHandler, exc: Exception) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that rejects the call with exc's status."""
    status = to_status(exc)

    def reject(request, context):
        context.abort_with_status(status)

    def reject_stream(request, context):
        context.abort_with_status(status)
        yield  # pragma: no cover - never reached

    return rebuild(handler, reject_stream if handler.response_streaming else reject)
