"""Optional bearer-token authentication with roles (admin, agent, reader).

When no tokens are configured every call is allowed (the local default). With tokens, each call must
carry `authorization: Bearer <token>`; the token's role decides which methods it may call. The standard
health and reflection services stay open so probes and grpcurl work.
"""

from __future__ import annotations

import grpc

from ..auth import OPEN_SERVICES, allowed, parse_tokens, role_of
from ..errors import PermissionDenied, Unauthenticated
from ._handlers import rebuild
from ._status import to_status

__all__ = ["AuthInterceptor", "allowed", "caller_role", "parse_tokens"]


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

    def _role(self, metadata) -> str | None:
        for key, value in metadata or ():
            if key == "authorization":
                return role_of(self._tokens, value)
        return None

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return continuation(handler_call_details)
        role = self._role(handler_call_details.invocation_metadata)
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


def _deny(handler: grpc.RpcMethodHandler, exc: Exception) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that rejects the call with exc's status."""
    status = to_status(exc)

    def reject(request, context):
        context.abort_with_status(status)

    def reject_stream(request, context):
        context.abort_with_status(status)
        yield  # pragma: no cover - never reached

    return rebuild(handler, reject_stream if handler.response_streaming else reject)
