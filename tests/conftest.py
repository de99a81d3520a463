"""Shared fixtures: `db`, `server` (in-process, 127.0.0.1:0), `client`, `echo_agent`, `workflows_stub`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pg
import pytest
import voltorch
from voltorch.v1 import workflows_pb2_grpc
from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config
from voltorch_server.storage import Database, migrate, open_database


@pytest.fixture(scope="session", autouse=True)
def _no_database_left_in_the_working_directory() -> Iterator[None]:
    """Tests keep their databases under pytest's temporary directories: a file left in the working
    directory (a replica's local database named for its port, say) would pile up in the checkout."""
    before = set(Path().glob("*.db*"))
    yield
    left = sorted(str(p) for p in set(Path().glob("*.db*")) - before)
    assert not left, f"the run left databases in {Path.cwd()}: {left}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.PostgresServer]:
    """One throwaway PostgreSQL for the whole run (tests/pg.py). Without one the PostgreSQL tests skip
    loudly, and fail under CI=true: CI must run them."""
    reason = pg.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " CI=true: the PostgreSQL tests are required here.")
        pytest.skip(reason)
    server = pg.start_server()
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(postgres: pg.PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the run's PostgreSQL."""
    dsn = postgres.new_database()
    yield dsn
    postgres.drop_database(dsn)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "voltorch.db"


BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets `BOTH_BACKENDS = True` runs each of its tests that uses `db` (or a `server`) on
    SQLite and on PostgreSQL: one parametrized fixture, not copies of the tests. A test about one backend's
    own shape says which with `@pytest.mark.backends("sqlite")`."""
    names = metafunc.fixturenames
    if getattr(metafunc.module, "BOTH_BACKENDS", False) and ("db" in names or "config" in names):
        only = metafunc.definition.get_closest_marker("backends")
        metafunc.parametrize("backend", only.args if only else BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db(request: pytest.FixtureRequest, backend: str, db_path: Path) -> Iterator[Database]:
    """A migrated database: a SQLite file, or (backend "postgres") a fresh PostgreSQL database."""
    if backend == "postgres":
        database = open_database(request.getfixturevalue("pg_dsn"))
    else:
        database = Database(db_path)
        migrate(database)
    yield database
    database.close()


@pytest.fixture
def config(request: pytest.FixtureRequest, backend: str, db_path: Path) -> Config:
    db = request.getfixturevalue("pg_dsn") if backend == "postgres" else str(db_path)
    return Config(host="127.0.0.1", port=0, db=db, shutdown_grace=2.0)


@pytest.fixture
def server(config: Config) -> Iterator[VoltorchServer]:
    srv = VoltorchServer(config).start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture
def client(server: VoltorchServer) -> Iterator[voltorch.Client]:
    with voltorch.Client(server.target, timeout=10) as c:
        yield c


def _echo(task: AgentTask, cancel: CancelSignal) -> dict[str, str]:
    if "fail" in task.text:
        raise RuntimeError("asked to fail")
    return {"text": task.text}


@pytest.fixture
def echo_agent(server: VoltorchServer) -> VoltorchServer:
    """The server with a function agent "echo" (capability "echo"): it answers {"text": its task}, and
    fails a task whose text says "fail"."""
    server.runtime.coordination.register_agent(
        "echo", kind="function", capabilities=("echo",), runtime=_echo, max_concurrency=4
    )
    return server


@pytest.fixture
def workflows_stub(server: VoltorchServer) -> Iterator[workflows_pb2_grpc.WorkflowServiceStub]:
    """The server's WorkflowService through the generated stub: the wire, without the SDK."""
    with grpc.insecure_channel(server.target) as ch:
        yield workflows_pb2_grpc.WorkflowServiceStub(ch)
