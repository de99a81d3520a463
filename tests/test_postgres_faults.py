"""A server on PostgreSQL that loses its database: UNAVAILABLE with a retry hint (never INTERNAL), the
health checks of its storage-backed components fail (UNHEALTHY), and everything is back once the
database is reachable again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
import voltorch
from voltorch.errors import UnavailableError
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config
from voltorch_server.errors import Unavailable

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pg_server(pg_dsn: str) -> Iterator[VoltorchServer]:
    config = Config(host="127.0.0.1", port=0, db=pg_dsn, shutdown_grace=1.0, watch_interval=0.2)
    srv = VoltorchServer(config).start()
    yield srv
    srv.stop(grace=1.0)


def _allow_connections(postgres, dsn: str, allow: bool) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_a_lost_database_is_unavailable_and_unhealthy_then_recovers(
    postgres, pg_dsn: str, pg_server: VoltorchServer
) -> None:
    with voltorch.Client(pg_server.target, timeout=30) as client:
        client.state.set("k", 1)
        _allow_connections(postgres, pg_dsn, False)
        try:
            with pytest.raises(UnavailableError) as err:
                client.state.get("k")
            assert err.value.reason == "DATABASE_UNAVAILABLE"
            assert "retry" in str(err.value)
            # The watcher judges a component UNHEALTHY when its check raises: storage's, state's and
            # events' do.
            runtime = pg_server.runtime
            for component in (runtime.storage, runtime.state, runtime.events):
                with pytest.raises(Unavailable):
                    component.check()
        finally:
            _allow_connections(postgres, pg_dsn, True)
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects by itself
            try:
                assert client.state.get("k").value == 1
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the server did not reconnect to its database"
                time.sleep(0.1)


def test_a_singleton_lease_has_one_holder_and_moves_when_it_dies(pg_dsn: str) -> None:
    """TTL expiry and compaction run where their advisory-lock lease is held: one replica at a time, and
    another one once the holder's session is gone (a dead replica's connection, closed here)."""
    from voltorch_server.storage import open_database

    a, b = open_database(pg_dsn), open_database(pg_dsn)
    lease_a, lease_b = a.try_lock(0x7E57), b.try_lock(0x7E57)
    try:
        assert lease_a.held()
        assert not lease_b.held()
        assert lease_a.held()  # still the holder at its next round
        lease_a.close()  # the holder dies: PostgreSQL releases the lock once its backend has noticed
        deadline = time.monotonic() + 10
        while not lease_b.held():  # the others try again at each round
            assert time.monotonic() < deadline, "the lease did not move after its holder died"
            time.sleep(0.05)
        assert not lease_a.held()
    finally:
        lease_a.close()
        lease_b.close()
        a.close()
        b.close()


def test_a_dsn_is_shown_without_its_password() -> None:
    from voltorch_server.storage import shown

    assert (
        shown("postgresql://app:s3cret@db.example:5432/voltorch")
        == "postgresql://app:***@db.example:5432/voltorch"
    )
    assert shown("postgresql://app@db.example/voltorch") == "postgresql://app@db.example/voltorch"
    assert shown("./voltorch.db") == "./voltorch.db"
