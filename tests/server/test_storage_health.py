"""A damaged database file: refused at start, found by `check_file`, and reported as an UNHEALTHY storage
component when the server meets it while running."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import grpc
import pytest
import voltorch
from fake_clock import FakeClock
from voltorch.v1 import events_pb2, orchestrator_pb2, state_pb2
from voltorch_server.app import VoltorchServer
from voltorch_server.components.system import Storage
from voltorch_server.errors import DatabaseCorrupt, StartupError
from voltorch_server.storage import Database, check_file, migrate, storage_error

PAGE = 4096


def _fill(config) -> None:
    with VoltorchServer(config) as srv, voltorch.Client(srv.target, timeout=30) as c:
        for i in range(300):
            c.state.set(f"k{i:04d}", {"v": "x" * 300, "i": i})
            c.events.publish("t.fill", {"i": i, "pad": "y" * 300}, source="test")


def _damage(path: Path) -> None:
    """Overwrite every other leaf page of the state table (`kv`) with random bytes. Only pages of a table
    the test reads: the event log stays sound, so the server can start and write its own events (damage
    chosen by position in the file hit the event log's pages or not depending on the schema's layout)."""
    with sqlite3.connect(path) as conn:
        pages = [
            r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = 'kv' AND pagetype = 'leaf'")
        ]
    conn.close()
    assert len(pages) >= 4
    with path.open("r+b") as f:
        for page in pages[::2]:
            f.seek((page - 1) * PAGE)
            f.write(os.urandom(PAGE))


@pytest.fixture
def damaged(config, db_path: Path) -> Path:
    _fill(config)
    assert check_file(db_path).ok
    _damage(db_path)
    return db_path


def test_a_sound_file_passes_both_checks(db):
    assert check_file(db.path).ok
    result = check_file(db.path, full=True)
    assert result.ok and result.full and result.problems == ()


def test_the_server_refuses_a_damaged_file_naming_it(config, damaged):
    with pytest.raises(DatabaseCorrupt) as err:
        VoltorchServer(config)
    message = str(err.value)
    assert "\n" not in message
    assert str(damaged) in message and "damaged" in message
    assert err.value.path == str(damaged)
    assert isinstance(err.value, StartupError)  # `voltorch serve` prints it as one line and exits 2
    # Refused, it gave the file and its owner lock back: a server told not to check can open it.
    VoltorchServer(config.with_overrides(db_quick_check=False)).stop()
    for full in (False, True):
        result = check_file(damaged, full=full)
        assert not result.ok and result.problems
        assert not [p for p in result.problems if "\n" in p or p.startswith("*** in database")]
        with pytest.raises(DatabaseCorrupt):
            result.raise_if_damaged()


def test_check_file_on_a_missing_file_says_so_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no database file"):
        check_file(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_storage_errors_met_while_running_make_storage_unhealthy(config, damaged):
    srv = VoltorchServer(config.with_overrides(db_quick_check=False, builtin_agents=False)).start()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            state = voltorch.v1.state_pb2_grpc.StateServiceStub(ch)
            events = voltorch.v1.events_pb2_grpc.EventServiceStub(ch)
            codes = set()
            for call in (
                lambda: state.ListKeys(state_pb2.ListKeysRequest(page_size=1000)),
                lambda: events.ListEvents(events_pb2.ListEventsRequest(page_size=1000)),
            ):
                try:
                    call()
                    codes.add(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.add(exc.code())
            assert grpc.StatusCode.INTERNAL in codes  # the damage is real
            orch = voltorch.v1.orchestrator_pb2_grpc.OrchestratorServiceStub(ch)
            health = orch.GetHealth(orchestrator_pb2.GetHealthRequest(refresh=True))
            storage = next(c for c in health.components if c.name == "storage")
            assert storage.status == orchestrator_pb2.HEALTH_STATUS_UNHEALTHY
            assert "malformed" in storage.message or "storage error" in storage.message
            assert health.status == orchestrator_pb2.HEALTH_STATUS_UNHEALTHY
    finally:
        srv.stop(grace=1.0)


def test_storage_component_clears_after_a_quiet_while_and_on_a_sound_restart(db):
    clock = FakeClock()
    storage = Storage(db, clear_after=60.0, clock=clock)
    storage.start()
    storage.check()  # passes
    storage.failed(sqlite3.DatabaseError("database disk image is malformed"))
    with pytest.raises(RuntimeError, match="malformed"):
        storage.check()
    clock.now += 61
    storage.check()  # quiet for longer than clear_after
    storage.failed(sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(RuntimeError):
        storage.check()
    storage.stop()
    storage.start()  # a restart runs a quick check: the file is sound
    storage.check()
    assert storage.details()["storage_errors"] == 2


def test_which_errors_are_storage_errors():
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    try:
        try:
            raise malformed
        except sqlite3.DatabaseError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert storage_error(wrapped) is malformed
    assert storage_error(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert storage_error(ValueError("x")) is None


def test_a_quick_check_on_restart_finds_damage(db_path, config):
    _fill(config)
    database = Database(db_path)
    migrate(database)
    storage = Storage(database)
    storage.start()
    _damage(db_path)
    try:
        storage.stop()
        storage.start()  # the restart's quick check reads the file afresh
        with pytest.raises(RuntimeError, match="damaged"):
            storage.check()
    finally:
        database.close()
