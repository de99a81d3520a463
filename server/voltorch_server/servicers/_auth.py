"""Optional bearer-token authentication with roles (admin, agent, reader).

When no tokens are configured every call is allowed (the local default). With tokens, each call must
carry `authorization: Bearer <token>`; the token's role decides which methods it may call. The standard
health and reflection services stay open so probes and grpcurl work.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path

import grpc

from ..errors import PermissionDenied, Unauthenticated
from ._status import to_status

ROLES = ("admin", "agent", "reader")
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_READ_VERBS = ("Get", "List", "Watch", "Subscribe")
_AGENT_METHODS = {
    "Publish",
    "PublishBatch",
    "Connect",
    "RegisterAgent",
    "UnregisterAgent",
    "UpdateCapabilities",
    "SetKey",
    "DeleteKey",
    "Transaction",
    "RequestCoordination",
    "CancelCoordination",
}


def parse_tokens(inline: str = "", path: str = "") -> dict[str, str]:
    """Tokens from "role:token,role:token" and/or a JSON file {"token": "role"}; returns token -> role."""
    tokens: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in inline.split(","))):
        role, sep, token = part.partition(":")
        if not sep or not token:
            raise ValueError(f"auth token entry {part!r} must look like role:token")
        tokens[token] = role
    if path:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object mapping token to role")
        tokens.update({str(k): str(v) for k, v in data.items()})
    for token, role in tokens.items():
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if len(token) < 16:
            raise ValueError("auth tokens must be at least 16 characters")
    return tokens


def allowed(role: str, method: str) -> bool:
    """May `role` call the full method name `method` (e.g. /voltorch.v1.StateService/SetKey)?"""
    if role == "admin":
        return True
    name = method.rsplit("/", 1)[-1]
    if name.startswith(_READ_VERBS):
        return True
    return role == "agent" and name in _AGENT_METHODS


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: dict[str, str]):
        self._tokens = tokens

    def role(self, metadata) -> str | None:
        """The role of the valid bearer token in metadata; None without one."""
        for key, value in metadata or ():
            if key == "authorization" and value.startswith("Bearer "):
                presented = value[7:].encode()
                for token, role in self._tokens.items():
                    if hmac.compare_digest(presented, token.encode()):
                        return role
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

    if handler.unary_unary:
        return handler._replace(unary_unary=reject)
    if handler.stream_unary:
        return handler._replace(stream_unary=reject)
    if handler.unary_stream:
        return handler._replace(unary_stream=reject_stream)
    return handler._replace(stream_stream=reject_stream)
