"""Shared fixtures: `db`, `server` (in-process, 127.0.0.1:0), `client`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import voltorch
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config
from voltorch_server.storage import Database, migrate


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "voltorch.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    database = Database(db_path)
    migrate(database)
    yield database
    database.close()


@pytest.fixture
def config(db_path: Path) -> Config:
    return Config(host="127.0.0.1", port=0, db=str(db_path), shutdown_grace=2.0)


@pytest.fixture
def server(config: Config) -> Iterator[VoltorchServer]:
    srv = VoltorchServer(config).start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture
def client(server: VoltorchServer) -> Iterator[voltorch.Client]:
    with voltorch.Client(server.target, timeout=10) as c:
        yield c
