"""WAL checkpoints run beside the writers (storage/sqlite/db.py): the WAL still starts over, and every
acknowledged commit is in the database file, or recovered from the WAL after a crash."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from voltorch_server.storage import Database


def _table(db: Database) -> None:
    with db.write() as tx:
        tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")


def _wal_frames(path: Path) -> int:
    """Frames in the WAL as another connection sees them (its PASSIVE checkpoint changes nothing else)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        conn.close()


def test_a_long_wal_starts_over_after_a_pass(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(path)
    try:
        assert db._checkpointer is not None
        db._checkpointer.restart_frames = 50
        _table(db)
        for i in range(300):
            with db.write() as tx:
                tx.execute("INSERT INTO t(v) VALUES (?)", ("x" * 500 + str(i),))
        db._checkpointer.run_once()  # the background thread does this every `every` commits
        with db.write() as tx:  # the first commit after a complete checkpoint rewinds the WAL
            tx.execute("INSERT INTO t(v) VALUES ('last')")
        assert _wal_frames(path) < 50
        assert db.query("SELECT COUNT(*) FROM t")[0][0] == 301
    finally:
        db.close()


def test_a_wal_of_5000_frames_is_checkpointed_without_pausing_writers(tmp_path: Path) -> None:
    """The writer-locked final pass holds every commit for its syncs: it comes only past WAL_RESTART_FRAMES.
    5,000 frames (an event commit writes ~6: under a second at 1,000 publishes/s) are copied beside the
    writers; past 2,000 frames the pause came three times a second and set the publish->deliver p99."""
    path = tmp_path / "c.db"
    db = Database(path)
    try:
        assert db._checkpointer is not None
        _table(db)
        with db.write() as tx:  # one commit of ~5,000 pages: the background pass is not due (every 100)
            tx.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 4000,) for _ in range(5000)])
        frames = _wal_frames(path)
        assert frames > 4000
        db._checkpointer.run_once()
        assert db._checkpointer.pauses == 0
        db._checkpointer.restart_frames = 1  # past the threshold the pass pauses the writers, once
        with db.write() as tx:
            tx.execute("INSERT INTO t(v) VALUES ('one more')")
        db._checkpointer.run_once()
        assert db._checkpointer.pauses == 1
        assert db.query("SELECT COUNT(*) FROM t")[0][0] == 5001
    finally:
        db.close()


def test_acknowledged_commits_survive_without_close(tmp_path: Path) -> None:
    """Several writers while checkpoints run; then the handle is abandoned, as a killed process would."""
    path = tmp_path / "c.db"
    db = Database(path)
    assert db._checkpointer is not None
    db._checkpointer.every = 7  # many background passes during the writes
    _table(db)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(150):
                with db.write() as tx:
                    tx.execute("INSERT INTO t(v) VALUES (?)", (f"{n}-{i}",))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    db._checkpointer.stop()  # no more passes; the writer connection is left open (nothing flushed)
    fresh = sqlite3.connect(path)
    try:
        assert fresh.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 600
        assert fresh.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        fresh.close()
        db.close()


def test_close_stops_the_checkpoint_thread(tmp_path: Path) -> None:
    db = Database(tmp_path / "c.db")
    assert db._checkpointer is not None
    thread = db._checkpointer._thread
    db.close()
    assert not thread.is_alive()
    assert Database(":memory:")._checkpointer is None
