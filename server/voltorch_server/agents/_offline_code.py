"""Deliverables the offline agent writes: short, runnable Python sketches, tests and docs.

Chosen by keywords of the task, filled in with its title; deterministic. They are starting points a
person (or an LLM agent) refines, and they say so.
"""

from __future__ import annotations

from typing import Any

from ._offline_text import slug

_STORE = '''"""User storage: accounts with salted PBKDF2 password hashes (sketch by the voltorch offline agent)."""

import hashlib
import hmac
import os
from dataclasses import dataclass


@dataclass
class User:
    username: str
    salt: bytes
    password_hash: bytes


class UserStore:
    def __init__(self) -> None:
        self._users: dict[str, User] = {}

    def add(self, username: str, password: str) -> User:
        if username in self._users:
            raise ValueError("username already taken")
        salt = os.urandom(16)
        user = User(username, salt, hash_password(password, salt))
        self._users[username] = user
        return user

    def get(self, username: str) -> User | None:
        return self._users.get(username)


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)


def verify_password(user: User, password: str) -> bool:
    return hmac.compare_digest(user.password_hash, hash_password(password, user.salt))
'''

_LOGIN = '''"""Login: verify credentials and issue a session token (sketch by the voltorch offline agent)."""

import secrets

from .user_store import UserStore, verify_password

SESSIONS: dict[str, str] = {}


class LoginError(Exception):
    """Raised for any failed login; one message so usernames cannot be enumerated."""


def login(store: UserStore, username: str, password: str) -> str:
    user = store.get(username)
    if user is None or not verify_password(user, password):
        raise LoginError("invalid username or password")
    token = secrets.token_urlsafe(32)
    SESSIONS[token] = username
    return token


def logout(token: str) -> None:
    SESSIONS.pop(token, None)
'''

_REGISTER = '''"""Registration: validate and create an account (sketch by the voltorch offline agent)."""

import re

from .user_store import User, UserStore

USERNAME = re.compile(r"^[a-z0-9_.-]{3,32}$")


class RegistrationError(ValueError):
    pass


def register(store: UserStore, username: str, password: str) -> User:
    if not USERNAME.match(username):
        raise RegistrationError("username: 3-32 of a-z, 0-9, '_', '.', '-'")
    if len(password) < 12:
        raise RegistrationError("password: at least 12 characters")
    try:
        return store.add(username, password)
    except ValueError as exc:
        raise RegistrationError(str(exc)) from None
'''

_GENERIC = '''"""{title} (sketch by the voltorch offline agent).

{description}
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class {cls}:
    """Holds the state {title_lower} needs and exposes one operation per use case."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("id", "data") if k not in request]
        if missing:
            raise ValueError(f"missing fields: {{', '.join(missing)}}")
        self.items[request["id"]] = request["data"]
        return {{"ok": True, "id": request["id"], "count": len(self.items)}}
'''

_TESTS = '''"""Tests for {title} (sketch by the voltorch offline agent)."""

import pytest

from src.{module} import {cls}


def test_handle_stores_item():
    svc = {cls}()
    assert svc.handle({{"id": "a", "data": {{"x": 1}}}}) == {{"ok": True, "id": "a", "count": 1}}


def test_handle_rejects_missing_fields():
    with pytest.raises(ValueError, match="missing fields"):
        {cls}().handle({{"id": "a"}})
'''

_AUTH_TESTS = '''"""Tests for the authentication sketch (by the voltorch offline agent)."""

import pytest

from src.login import LoginError, login
from src.registration import RegistrationError, register
from src.user_store import UserStore


def test_register_then_login():
    store = UserStore()
    register(store, "alice", "correct horse battery")
    assert login(store, "alice", "correct horse battery")


def test_wrong_password_and_unknown_user_fail_alike():
    store = UserStore()
    register(store, "alice", "correct horse battery")
    with pytest.raises(LoginError) as wrong:
        login(store, "alice", "nope")
    with pytest.raises(LoginError) as unknown:
        login(store, "bob", "nope")
    assert str(wrong.value) == str(unknown.value)


def test_short_password_rejected():
    with pytest.raises(RegistrationError):
        register(UserStore(), "carol", "short")
'''


def _cls(title: str) -> str:
    name = "".join(w.capitalize() for w in slug(title).split("_") if w)
    return (name or "Component") + ("" if name.endswith("Service") else "Service")


def _is_auth(text: str) -> bool:
    return any(
        k in text for k in ("auth", "login", "log in", "sign in", "password", "regist", "signup", "user")
    )


def coding_files(title: str, description: str) -> list[dict[str, Any]]:
    low = f"{title} {description}".lower()
    if "login" in low or "sign in" in low or "log in" in low:
        return [{"path": "src/login.py", "language": "python", "content": _LOGIN}]
    if "regist" in low or "sign up" in low or "signup" in low:
        return [{"path": "src/registration.py", "language": "python", "content": _REGISTER}]
    if _is_auth(low) and any(k in low for k in ("storage", "store", "core", "persist", "database")):
        return [{"path": "src/user_store.py", "language": "python", "content": _STORE}]
    module = slug(title)
    content = _GENERIC.format(
        title=title, title_lower=title.lower(), description=description or title, cls=_cls(title)
    )
    return [{"path": f"src/{module}.py", "language": "python", "content": content}]


def testing_files(title: str, description: str, context_text: str) -> list[dict[str, Any]]:
    if _is_auth(f"{title} {description} {context_text}".lower()):
        return [{"path": "tests/test_auth.py", "language": "python", "content": _AUTH_TESTS}]
    module = slug(title.removeprefix("Test ").removeprefix("Write tests for "))
    content = _TESTS.format(title=title, module=module, cls=_cls(module))
    return [{"path": f"tests/test_{module}.py", "language": "python", "content": content}]


def documentation_files(
    title: str, description: str, analysis: dict[str, Any] | None
) -> list[dict[str, Any]]:
    lines = [f"# {title}", "", description or title, ""]
    if analysis:
        lines += ["## Overview", "", analysis.get("summary", ""), ""]
        reqs = analysis.get("requirements") or []
        if reqs:
            lines += ["## Requirements", ""]
            lines += [
                f"- **{r.get('id', '')}** {r.get('title', r)}" if isinstance(r, dict) else f"- {r}"
                for r in reqs
            ]
            lines.append("")
        comps = analysis.get("components") or []
        if comps:
            lines += ["## Components", ""]
            lines += [
                f"- `{c.get('name', '')}`: {c.get('responsibility', '')}" if isinstance(c, dict) else f"- {c}"
                for c in comps
            ]
            lines.append("")
    lines += [
        "## Usage",
        "",
        "Install the package, run the tests with `pytest`, then call the services from your entry point.",
        "",
        "_Written by the voltorch offline agent (deterministic, no LLM); review before publishing._",
        "",
    ]
    return [{"path": f"docs/{slug(title, '-')}.md", "language": "markdown", "content": "\n".join(lines)}]
