"""VoltorchServer start-up failures are StartupErrors and give the database back (in process)."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
import voltorch
from voltorch_server.app import VoltorchServer
from voltorch_server.errors import DatabaseInUse, StartupError


def test_a_server_that_cannot_bind_releases_the_database(config, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"port {port} on 127.0.0.1 is in use"):
            # a fixed port beside PostgreSQL names a local file: keep it out of the working directory
            VoltorchServer(replace(config, port=port, local_db=str(tmp_path / "local.db")))
    with VoltorchServer(config) as srv, voltorch.Client(srv.target, timeout=10) as c:
        assert c.state.set("after", 1).kv.version == 1


def test_the_owner_is_named_and_the_lock_released_on_stop(config):
    with VoltorchServer(config) as first:
        with pytest.raises(DatabaseInUse) as info:
            VoltorchServer(replace(config, port=0))
        assert info.value.address == first.target and info.value.pid
    with VoltorchServer(config):
        pass  # the lock went with the first server
