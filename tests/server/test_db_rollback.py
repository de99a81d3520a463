"""Rollback callbacks (`Tx.after_rollback`): they run once a transaction has rolled back, or failed to
commit, the last registered first, and never after a commit; a failing one is logged and the caller hears
of the transaction's own error. SQLite and PostgreSQL. (The parts of SQLite's shared COMMITs:
test_db_group_commit.py.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from voltorch_server.storage import Database

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)


class Boom(Exception):
    pass


def _tables(db: Any) -> None:
    with db.write() as tx:
        tx.execute("CREATE TABLE rb_t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        tx.execute("CREATE TABLE rb_parent (id INTEGER PRIMARY KEY)")
        tx.execute(
            "CREATE TABLE rb_child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES rb_parent(id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )


def _values(db: Any) -> list[Any]:
    return [r[0] for r in db.query("SELECT v FROM rb_t ORDER BY id")]


def test_a_rolled_back_transaction_runs_its_rollback_callbacks_newest_first_and_no_after_commit_one(
    db: Database,
) -> None:
    _tables(db)
    heard: list[str] = []
    with pytest.raises(Boom), db.write() as tx:
        tx.execute("INSERT INTO rb_t (id, v) VALUES (1, 'a')")
        tx.after_rollback(lambda: heard.append(f"first, rolled back: {_values(db)}"))
        tx.after_rollback(lambda: heard.append("second"))
        tx.after_commit(lambda: heard.append("committed"))
        raise Boom
    assert heard == ["second", "first, rolled back: []"]


def test_a_committed_transaction_never_runs_its_rollback_callbacks(db: Database) -> None:
    _tables(db)
    heard: list[str] = []
    with db.write() as tx:
        tx.execute("INSERT INTO rb_t (id, v) VALUES (1, 'a')")
        tx.after_rollback(lambda: heard.append("rolled back"))
        tx.after_commit(lambda: heard.append("committed"))
    assert heard == ["committed"]
    assert _values(db) == ["a"]
    with pytest.raises(Boom), db.write() as tx:  # the next transaction's rollback: only its own callbacks
        tx.after_rollback(lambda: heard.append("the next one rolled back"))
        raise Boom
    assert heard == ["committed", "the next one rolled back"]


def test_a_commit_that_fails_runs_the_rollback_callbacks_and_no_after_commit_one(db: Database) -> None:
    """A deferred foreign key is checked at COMMIT: the database refuses it, the transaction rolls back."""
    _tables(db)
    heard: list[str] = []
    with pytest.raises(Exception) as failed, db.write() as tx:
        tx.execute("INSERT INTO rb_t (id, v) VALUES (1, 'a')")
        tx.execute("INSERT INTO rb_child (id, parent) VALUES (1, 42)")
        tx.after_rollback(lambda: heard.append("rolled back"))
        tx.after_commit(lambda: heard.append("committed"))
    assert "foreign key" in str(failed.value).lower()
    assert heard == ["rolled back"]
    assert _values(db) == []


def test_a_failing_rollback_callback_is_logged_and_the_others_run_and_the_error_is_the_transactions(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    _tables(db)
    heard: list[str] = []

    def fails() -> None:
        raise RuntimeError("the callback's own failure")

    with caplog.at_level(logging.ERROR), pytest.raises(Boom), db.write() as tx:
        tx.after_rollback(lambda: heard.append("first"))
        tx.after_rollback(fails)
        raise Boom
    assert heard == ["first"]
    assert any("rollback callback failed" in r.getMessage() for r in caplog.records)


def test_a_transaction_that_locks_a_counter_first_runs_them_too(db: Database) -> None:
    """`write(lock=…)`: PostgreSQL's BEGIN with its counter lock, rolled back by hand (SQLite ignores it)."""
    _tables(db)
    heard: list[str] = []
    with pytest.raises(Boom), db.write(lock="events") as tx:
        tx.execute("INSERT INTO rb_t (id, v) VALUES (1, 'a')")
        tx.after_rollback(lambda: heard.append("rolled back"))
        tx.after_commit(lambda: heard.append("committed"))
        raise Boom
    with db.write(lock="events") as tx:
        tx.execute("INSERT INTO rb_t (id, v) VALUES (2, 'b')")
        tx.after_rollback(lambda: heard.append("rolled back after its commit"))
        tx.after_commit(lambda: heard.append("committed"))
    assert heard == ["rolled back", "committed"]
    assert _values(db) == ["b"]
