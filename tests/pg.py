"""The tests' PostgreSQL: one server per test run (voltorch_server.throwaway_postgres), a fresh database
per test. `VOLTORCH_TEST_POSTGRES_DSN` (a postgresql:// URL of an existing server whose user may CREATE
DATABASE) is used instead when set."""

from __future__ import annotations

import os

from voltorch_server.throwaway_postgres import PostgresServer, find_bindir

ENV_DSN = "VOLTORCH_TEST_POSTGRES_DSN"


def unavailable_reason() -> str | None:
    """Why no PostgreSQL can be had here (None when one can)."""
    if os.environ.get(ENV_DSN):
        return None
    if find_bindir() is None:
        return (
            "no PostgreSQL server binaries (initdb, postgres) on this machine: install postgresql "
            f"or set {ENV_DSN}"
        )
    return None


def start_server() -> PostgresServer:
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        return PostgresServer.existing(dsn)
    bindir = find_bindir()
    assert bindir is not None
    return PostgresServer.start(bindir)
