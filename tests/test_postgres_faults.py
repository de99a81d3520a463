"""A server on PostgreSQL that loses its database: UNAVAILABLE with a retry hint (never INTERNAL), the
health checks of its storage-backed components fail (UNHEALTHY), and everything is back once the
database is reachable again. A write that deadlocks with another session is retried inside the server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import polling
import psycopg
import pytest
import voltorch
from polling import until
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


@pytest.fixture
def quiet_pg_server(pg_dsn: str) -> Iterator[VoltorchServer]:
    """A server whose watcher writes nothing meanwhile: the test's writes are the only ones."""
    config = Config(
        host="127.0.0.1", port=0, db=pg_dsn, shutdown_grace=1.0, watch_interval=600, metrics_interval=600
    )
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
                client.state.set("k", 2)
            assert err.value.reason == "DATABASE_UNAVAILABLE"
            assert "retry" in str(err.value)

            def read_fails() -> UnavailableError | None:
                # The cached row answers until the follower notices its connection is gone.
                try:
                    client.state.get("k")
                    return None
                except UnavailableError as exc:
                    return exc

            assert until(read_fails, timeout=10).reason == "DATABASE_UNAVAILABLE"
            # The watcher judges a component UNHEALTHY when its check raises: storage's, state's and
            # events' do.
            runtime = pg_server.runtime
            for component in (runtime.storage, runtime.state, runtime.events):
                with pytest.raises(Unavailable):
                    component.check()
        finally:
            _allow_connections(postgres, pg_dsn, True)

        def answers() -> bool:  # the pool reconnects by itself
            try:
                return client.state.get("k").value == 1
            except UnavailableError:
                return False

        polling.until(answers, timeout=30, why=lambda: "the server did not reconnect to its database")


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
        # the others try again at each round
        polling.until(lease_b.held, timeout=10, why=lambda: "the lease did not move after its holder died")
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


def _blocked_by(dsn: str, pid: int) -> int:
    """How many sessions wait for a lock that backend `pid` holds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
        ).fetchone()
        return row[0] if row else 0


@pytest.mark.parametrize(
    "write, first_lock, second_lock",
    [
        # A state write locks the revision row, then the kv_history counter (storage/postgres/_db.py).
        (
            "set",
            "SELECT value FROM voltorch_counters WHERE name = 'kv_history' FOR UPDATE",
            "SELECT value FROM meta WHERE name = 'revision' FOR UPDATE",
        ),
        # A Publish is one statement: it locks the events table (for its INSERT) as it starts, then the
        # events counter row (stores/events.py).
        (
            "publish",
            "SELECT value FROM voltorch_counters WHERE name = 'events' FOR UPDATE",
            "LOCK TABLE events IN ACCESS EXCLUSIVE MODE",
        ),
    ],
)
def test_a_write_that_deadlocks_with_another_session_is_retried_and_commits(
    pg_dsn: str,
    quiet_pg_server: VoltorchServer,
    caplog: pytest.LogCaptureFixture,
    write: str,
    first_lock: str,
    second_lock: str,
) -> None:
    """Another session takes the server's locks in the opposite order: PostgreSQL detects the deadlock
    and aborts the server's transaction (its deadlock_timeout runs out first), which the server runs
    again once the other session has committed: the client sees a plain success."""
    caplog.set_level(logging.INFO, logger="voltorch.db")
    with voltorch.Client(quiet_pg_server.target, timeout=30) as client, psycopg.connect(pg_dsn) as other:
        client.state.set("k", 0)
        client.events.publish("warm.up")
        # The server's sessions detect the deadlock (default deadlock_timeout, 1 s), never this one.
        other.execute("SET deadlock_timeout = '60s'")
        other.execute(first_lock)  # the first half of the server's locks, in a transaction kept open
        pid = other.info.backend_pid
        outcome: list[object] = []

        def run() -> None:
            try:
                if write == "set":
                    outcome.append(client.state.set("k", 1))
                else:
                    outcome.append(client.events.publish("after.deadlock"))
            except Exception as exc:
                outcome.append(exc)

        writer = threading.Thread(target=run)
        writer.start()
        until(lambda: _blocked_by(pg_dsn, pid) > 0, timeout=20)  # the server's write waits for our lock
        # The other half, which the server's transaction holds: a deadlock, and the server's is aborted.
        other.execute(second_lock)
        other.commit()
        writer.join(timeout=30)
        assert not writer.is_alive()
        assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
        assert any("deadlock detected" in r.getMessage() for r in caplog.records), "no retry was logged"
        if write == "set":
            assert client.state.get("k").value == 1
        else:
            assert [e.type for e in client.events.list("after.deadlock")] == ["after.deadlock"]


def _storage(client: voltorch.Client) -> tuple[str, str]:
    """The storage component's status and message, as a fresh GetHealth reports them."""
    health = client.orchestrator.health(refresh=True)
    storage = next(c for c in health.components if c.name == "storage")
    return storage.status, storage.message


def test_get_health_answers_promptly_during_an_outage_and_recovers(postgres, pg_dsn: str) -> None:
    """While the database refuses every connection, GetHealth (refresh=True: every check runs now)
    answers within a short deadline and names the storage component UNHEALTHY with the reason; once the
    database is back, storage is HEALTHY again and writes succeed."""
    config = Config(
        host="127.0.0.1", port=0, db=pg_dsn, shutdown_grace=1.0, watch_interval=0.2,
        restart_stable_seconds=0.5,
    )  # fmt: skip
    srv = VoltorchServer(config).start()
    try:
        # Every GetHealth below must answer within 3 s (a DeadlineExceeded fails the test).
        with voltorch.Client(srv.target, timeout=3) as client:
            client.state.set("k", 1)
            assert _storage(client)[0] == "HEALTHY"
            _allow_connections(postgres, pg_dsn, False)
            try:
                status, message = until(lambda: (s := _storage(client))[0] == "UNHEALTHY" and s, timeout=20)
                assert "database" in message and "retry" in message, message
                for _ in range(3):  # and it stays prompt, round after round
                    t0 = time.monotonic()
                    assert _storage(client)[0] == "UNHEALTHY"
                    assert time.monotonic() - t0 < 3
            finally:
                _allow_connections(postgres, pg_dsn, True)
            until(lambda: _storage(client)[0] == "HEALTHY", timeout=30)

            def write() -> bool:
                try:
                    client.state.set("k", 2)
                    return True
                except UnavailableError:  # a pooled connection from before the outage fails once
                    return False

            until(write, timeout=30)
            assert client.state.get("k").value == 2
    finally:
        srv.stop(grace=1.0)


def test_a_caller_waiting_for_a_pooled_connection_hears_of_an_outage_without_waiting_out_the_pool(
    postgres, pg_dsn: str
) -> None:
    """The pool's one connection is taken; a second caller waits for it. The database then refuses
    connections: once the probe knows, the waiting caller fails with the probe's reason, not with the
    pool's timeout (30 s here, which would leave GetHealth hanging behind such waits)."""
    from voltorch_server.storage.postgres import PgDatabase

    db = PgDatabase(pg_dsn, min_size=1, max_size=1, timeout=30)
    outcome: list[BaseException] = []
    try:
        with db.snapshot():  # holds the pool's only connection

            def wait_for_one() -> None:
                try:
                    db.query("SELECT 1")
                except BaseException as exc:
                    outcome.append(exc)

            waiter = threading.Thread(target=wait_for_one)
            waiter.start()
            _allow_connections(postgres, pg_dsn, False)
            try:
                waiter.join(timeout=60)
                assert not waiter.is_alive()
            finally:
                _allow_connections(postgres, pg_dsn, True)
    except Unavailable:
        pass  # leaving the snapshot: its connection was terminated
    finally:
        db.close()
    [error] = outcome
    assert isinstance(error, Unavailable) and error.reason == "DATABASE_UNAVAILABLE", error
    assert "PoolTimeout" not in error.message, error.message
