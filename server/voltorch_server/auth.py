"""Bearer tokens and roles (admin, agent, reader): one policy for every surface (gRPC and the console).

Plain Python: the gRPC interceptor (`servicers/_auth.py`) and the web console both ask `role_of` who
presented a token and `allowed` whether that role may call a method, named as its gRPC method.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

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
    "PublishStream",
    "Connect",
    "RegisterAgent",
    "UnregisterAgent",
    "UpdateCapabilities",
    "SetKey",
    "DeleteKey",
    "Transaction",
    "RequestCoordination",
    "CancelCoordination",
    # Workflow control: agents start and steer the work they orchestrate (the console's buttons too).
    "StartExecution",
    "RunExecution",
    "ExecuteCompleteWorkflow",
    "PauseExecution",
    "ResumeExecution",
    "CancelExecution",
    "SignalExecution",
    "CreateSchedule",
    "DeleteSchedule",
    "TriggerSchedule",
    "PauseSchedule",
    "UnpauseSchedule",
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
        except UnicodeDecodeError:
            raise ValueError(f"auth_tokens_file {path}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
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


def may_direct_llm_calls(role: str) -> bool:
    """May `role` say where an LLM agent's calls go (`llm.base_url`) and which variable of the server's
    environment is their key (`llm.api_key_env`)? Together they send a value of that environment to a URL:
    an admin's to decide. An agent's token may register LLM agents on the server's own endpoint and key."""
    return role == "admin"


def role_of(tokens: dict[str, str], authorization: str) -> str | None:
    """The role of an `authorization: Bearer <token>` value, None when it names no known token."""
    if not authorization.startswith("Bearer "):
        return None
    presented = authorization[7:].encode()
    for token, role in tokens.items():
        if hmac.compare_digest(presented, token.encode()):
            return role
    return None
