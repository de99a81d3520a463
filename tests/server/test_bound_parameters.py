"""Parameters bound without sqlite3's adapter search (storage/sqlite/_params.py, the workflow store's
statuses as plain str): what is stored is what was stored before, NULL for None and the status's text,
on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
import voltorch_server.storage.sqlite  # noqa: F401  # registers the None adapter
from engines import Engines, build
from voltorch_server.components.workflows import AgentTaskSpec, StepSpec, Template
from voltorch_server.storage import Database

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture
def engines(db: Database) -> Iterator[Engines]:
    e = build(db)
    yield e
    e.stop()


def test_none_is_null_and_a_status_is_its_text(engines: Engines, db: Database) -> None:
    wf = engines.workflows
    wf.register_template(
        Template(
            name="two",
            steps=(
                StepSpec("a", AgentTaskSpec("a", capabilities=("upper",))),
                StepSpec("b", AgentTaskSpec("b", capabilities=("upper",)), depends_on=("a",)),
            ),
        )
    )
    e, _ = wf.start_execution("two")
    assert engines.finished(e.id).status == "completed"
    rows = db.query(
        "SELECT step_id, status, structured IS NULL AS no_structured, error IS NULL AS no_error,"
        " item IS NULL AS no_item, next_retry_time IS NULL AS no_retry"
        " FROM workflow_steps WHERE execution_id = ? ORDER BY position",
        (e.id,),
    )
    assert [tuple(r) for r in rows] == [("a", "completed", 1, 1, 1, 1), ("b", "completed", 1, 1, 1, 1)]
    assert [type(r["status"]) for r in rows] == [str, str]
    [row] = db.query(
        "SELECT status, error IS NULL AS no_error FROM workflow_executions WHERE id = ?", (e.id,)
    )
    assert (row["status"], row["no_error"]) == ("completed", 1)
    if db.dialect.name == "sqlite":
        with db.write() as tx:
            [bound] = tx.execute("SELECT ? IS NULL AS n, typeof(?) AS k", (None, None)).fetchall()
        assert (bound["n"], bound["k"]) == (1, "null")
        [kind] = db.query(
            "SELECT typeof(status) AS k FROM workflow_steps WHERE execution_id = ? AND step_id = 'a'", (e.id,)
        )
        assert kind["k"] == "text"


def test_the_sqlite_backend_registers_its_null_adapter() -> None:
    """The point of storage/sqlite/_params.py: None is found in sqlite3's adapter registry (no failed
    search per NULL parameter) and still binds as NULL."""
    adapter = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert adapter(None) is None
    with sqlite3.connect(":memory:") as conn:
        assert conn.execute("SELECT ? IS NULL", (None,)).fetchone() == (1,)
