"""Optional bearer-token authentication with roles (admin, agent, reader).

When no tokens are configured every call is allowed (the local default). With tokens, each call must
carry `authorization: Bearer <token>`; the token's role decides which methods it may call. The standard
health and reflection services stay open so probes and grpcurl work.
"""

from __future__ import annotations

import hmac
import json
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
    """Tokens from "role:token,role:token" and/or a JSON file {"token": "role"}; returns token -> role.

    Errors name the entry by its position, never by its text: a token must not reach a message or a log
    (a reversed "token:role" entry would put the token where the role goes)."""
    entries: list[tuple[str, str, str]] = []  # (where, token, role)
    for i, part in enumerate(filter(None, (p.strip() for p in inline.split(","))), start=1):
        role, sep, token = part.partition(":")
        if not sep or not token:
            raise ValueError(f"auth_tokens entry {i} must look like role:token (roles: {', '.join(ROLES)})")
        entries.append((f"auth_tokens entry {i}", token, role))
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"auth_tokens_file {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"auth_tokens_file {path}: not valid JSON (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ValueError(f"auth_tokens_file {path}: expected a JSON object mapping token to role")
        entries += [
            (f"auth_tokens_file {path} entry {i}", str(k), str(v)) for i, (k, v) in enumerate(data.items(), 1)
        ]
    tokens: dict[str, str] = {}
    for where, token, role in entries:
        if role not in ROLES:
            raise ValueError(f"{where} has an unknown role; roles are {', '.join(ROLES)}")
        if len(token) < 16:
            raise ValueError(f"{where}: the token must be at least 16 characters")
        tokens[token] = role
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

    def _role(self, metadata) -> str | None:
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

    if handler.unary_unary:
        return handler._replace(unary_unary=reject)
    if handler.stream_unary:
        return handler._replace(stream_unary=reject)
    if handler.unary_stream:
        return handler._replace(unary_stream=reject_stream)
    return handler._replace(stream_stream=reject_stream)
