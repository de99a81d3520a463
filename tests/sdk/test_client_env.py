"""Client() with no target or token reads VOLTORCH_TARGET / VOLTORCH_TOKEN, as the CLI does."""

from __future__ import annotations

from dataclasses import replace

import pytest
import voltorch
from voltorch.errors import UnauthenticatedError
from voltorch_server.app import VoltorchServer

TOKEN = "admin-token-from-the-env-0123"


def test_client_without_a_target_uses_voltorch_target(server, monkeypatch):
    monkeypatch.setenv("VOLTORCH_TARGET", server.target)
    with voltorch.Client(timeout=10) as c:
        assert c.target == server.target
        c.state.set("env.target", 1)
        assert c.state.get("env.target").value == 1


def test_client_without_a_token_uses_voltorch_token(config, monkeypatch):
    with VoltorchServer(replace(config, auth_tokens=f"admin:{TOKEN}")) as srv:
        monkeypatch.setenv("VOLTORCH_TARGET", srv.target)
        monkeypatch.delenv("VOLTORCH_TOKEN", raising=False)
        with voltorch.Client(timeout=10) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.state.set("env.token", 1)
        monkeypatch.setenv("VOLTORCH_TOKEN", TOKEN)
        with voltorch.Client(timeout=10) as c:
            assert c.state.set("env.token", 1).kv.version == 1


def test_an_explicit_target_wins_over_the_environment(server, monkeypatch):
    monkeypatch.setenv("VOLTORCH_TARGET", "127.0.0.1:1")
    with voltorch.Client(server.target, timeout=10) as c:
        assert c.state.set("env.explicit", 1).kv.version == 1
