"""Named migrations: a fresh database gets exactly the schema voltorch 0.1.0 made (now built with
sqlite-utils), and a database made by 0.1.0 opens, keeps its data and is served. Also `voltorch db info`.
PostgreSQL has the same named migrations in the same order, making the same tables and columns."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import voltorch
from voltorch_server.app import VoltorchServer
from voltorch_server.cli import main
from voltorch_server.config import Config
from voltorch_server.storage import MIGRATIONS, Database, migrate
from voltorch_server.storage.postgres import PgDatabase
from voltorch_server.storage.postgres import migrate as migrate_pg
from voltorch_server.storage.sqlite.inspect import inspect_database

OLD_DUMP = Path(__file__).parent / "data" / "voltorch-0.1.0.sql"
AFTER_0_1_0 = [
    "workflows_0002_usage",
    "coordination_0002_tools",
    "workflows_0003_signals_timers",
    "schedules_0001",
    "cluster_0001_members",
    "cluster_0002_ownership",
    "events_0003_newest_time",
]  # migrations added since 0.1.0: what its databases get on opening


def _old_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(OLD_DUMP.read_text())
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return path


def _shape(path: Path) -> dict:
    """Everything about the schema that behaviour depends on, independent of how the SQL was written."""
    conn = sqlite3.connect(path)
    shape = {}
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        indexes = {}
        for _, index, unique, origin, partial in conn.execute(f"PRAGMA index_list('{name}')"):
            columns = [r[2] for r in conn.execute(f"PRAGMA index_info('{index}')")]
            row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()
            sql_of_index = (row[0] if row else None) or ""  # no SQL: the index of a key constraint
            where = sql_of_index.split(" WHERE ", 1)[1] if " WHERE " in sql_of_index else ""
            key = index if origin == "c" else f"{origin}:{columns}"  # autoindex names depend on order
            indexes[key] = (columns, unique, partial, where)
        shape[name] = {
            "columns": [r[1:] for r in conn.execute(f"PRAGMA table_xinfo('{name}')")],
            "indexes": indexes,
            "foreign_keys": [r[2:] for r in conn.execute(f"PRAGMA foreign_key_list('{name}')")],
            "without_rowid": "WITHOUT ROWID" in (sql or "").upper(),
            "autoincrement": "AUTOINCREMENT" in (sql or "").upper(),
            "checks": "CHECK" in (sql or "").upper(),
        }
    conn.close()
    return shape


def test_a_fresh_database_has_the_schema_0_1_0_made_plus_later_migrations(tmp_path: Path) -> None:
    db = Database(tmp_path / "fresh.db")
    assert migrate(db) == [name for name, _ in MIGRATIONS]
    db.close()
    old = _old_database(tmp_path / "old.db")
    upgraded = Database(old)
    assert migrate(upgraded) == AFTER_0_1_0
    upgraded.close()
    fresh_shape, old_shape = _shape(tmp_path / "fresh.db"), _shape(old)
    assert sorted(fresh_shape) == sorted(old_shape)
    assert {"workflow_schedules", "workflow_signals", "workflow_timers"} <= set(fresh_shape)
    for table in old_shape:
        assert fresh_shape[table] == old_shape[table], table


def test_a_failed_migration_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    from voltorch_server.storage.sqlite import migrations

    def broken(tx) -> None:
        migrations._schema(tx).table("half").create({"id": int}, pk="id")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, ("9999_broken", broken)])
    db = Database(tmp_path / "x.db")
    with pytest.raises(RuntimeError, match="boom"):
        migrate(db)
    tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    applied = [r[0] for r in db.query("SELECT name FROM _migrations")]
    db.close()
    assert "half" not in tables and "9999_broken" not in applied and "kv" in tables


def test_a_database_made_by_0_1_0_opens_and_keeps_its_data(tmp_path: Path) -> None:
    old = _old_database(tmp_path / "old.db")
    db = Database(old)
    assert migrate(db) == AFTER_0_1_0  # the ones it has are recorded: only the later ones run
    db.close()
    with (
        VoltorchServer(Config(host="127.0.0.1", port=0, db=str(old))) as server,
        voltorch.Client(server.target) as client,
    ):
        kv = client.state.get("old/key")
        assert kv.value == {"made": "0.1.0"} and kv.mod_revision == 1
        assert client.state.set("old/key", {"made": "now"}).kv.mod_revision == 2
        assert [h.kv.value for h in client.state.history("old/key")][:2] == [
            {"made": "now"},
            {"made": "0.1.0"},
        ]


def test_inspect_reports_tables_rows_schema_version_and_integrity(tmp_path: Path) -> None:
    info = inspect_database(_old_database(tmp_path / "old.db"))
    assert info.tables["kv"] == 1 and info.tables["kv_history"] == 1 and info.tables["events"] == 0
    assert "sqlite_sequence" not in info.tables
    before = [name for name, _ in MIGRATIONS if name not in AFTER_0_1_0]
    assert info.applied == before and info.pending == AFTER_0_1_0 and info.unknown == []
    assert info.schema_version == before[-1]
    assert info.integrity == ["ok"] and info.ok


def test_inspect_a_database_no_server_has_opened_and_one_from_a_newer_version(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    info = inspect_database(empty)
    assert info.tables == {} and info.schema_version == "" and info.pending == [n for n, _ in MIGRATIONS]
    newer = _old_database(tmp_path / "newer.db")
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO _migrations VALUES ('9999_future', 0)")
    info = inspect_database(newer)
    assert info.unknown == ["9999_future"] and info.schema_version == "9999_future"


def test_inspect_does_not_write(tmp_path: Path) -> None:
    old = _old_database(tmp_path / "old.db")
    before = old.read_bytes()
    inspect_database(old)
    assert old.read_bytes() == before


def test_inspect_finds_corruption(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute("CREATE INDEX t_x ON t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(f"v{i}",) for i in range(200)])
    conn.commit()
    # Rewrite the index's rows behind SQLite's back: the table and its index disagree.
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX t_x ON t(x DESC)' WHERE name = 't_x'")
    conn.commit()
    conn.close()
    info = inspect_database(path)
    assert not info.ok and info.integrity != ["ok"]


def test_db_info_command(tmp_path: Path, capsys) -> None:
    old = _old_database(tmp_path / "old.db")
    upgraded = Database(old)
    migrate(upgraded)
    upgraded.close()
    assert main(["db", "info", "--db", str(old), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tables"]["kv"] == 1 and out["schema_version"] == MIGRATIONS[-1][0] and out["ok"] is True
    assert main(["db", "info", "--db", str(old)]) == 0
    text = capsys.readouterr().out
    assert "kv_history" in text and f"schema version: {MIGRATIONS[-1][0]}" in text and "integrity: ok" in text
    assert main(["db", "info", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no database file" in capsys.readouterr().err
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert main(["db", "info", "--db", str(tmp_path / "junk.db")]) == 2
    assert "not a database" in capsys.readouterr().err


# -- PostgreSQL: the same named migrations -------------------------------------------------------------

PG_BEFORE_WATCHER = [
    "0001_state",
    "0002_events",
    "events_0002_compaction",
    "workflows_0001",
    "coordination_0001",
    "workflows_0002_usage",
    "coordination_0002_tools",
    "workflows_0003_signals_timers",
    "cluster_0001_members",
    "events_0003_newest_time",
]  # the test below undoes the system, schedule and ownership migrations: what remains


def _pg_tables(db: PgDatabase) -> dict[str, list[str]]:
    rows = db.query(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " ORDER BY table_name, ordinal_position"
    )
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def test_a_fresh_postgresql_database_has_every_table_and_column_of_sqlite(
    tmp_path: Path, pg_dsn: str
) -> None:
    lite = Database(tmp_path / "fresh.db")
    migrate(lite)
    names = [r[0] for r in lite.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    sqlite_tables = {
        n: [r[1] for r in lite.query(f"PRAGMA table_info('{n}')")] for n in names if n != "sqlite_sequence"
    }
    lite.close()
    pg = PgDatabase(pg_dsn)
    try:
        assert migrate_pg(pg) == [name for name, _ in MIGRATIONS]  # the same names, in the same order
        assert migrate_pg(pg) == []
        pg_tables = _pg_tables(pg)
    finally:
        pg.close()
    # PostgreSQL's AUTOINCREMENT (see _db), with the newest event time beside the events counter
    assert pg_tables.pop("voltorch_counters") == ["name", "value", "time"]
    pg_tables["snapshots"].remove("seq")  # SQLite's rowid (storage/_dialect.py: insertion_order)
    assert pg_tables == sqlite_tables


def test_a_postgresql_database_from_before_the_port_gets_the_new_migrations_and_keeps_its_data(
    pg_dsn: str,
) -> None:
    pg = PgDatabase(pg_dsn)
    try:
        migrate_pg(pg)
        with pg.write() as tx:  # back to what the earlier migrations made: without the ported tables
            tx.execute("DROP TABLE errors, metric_samples, workflow_schedules")
            tx.execute("ALTER TABLE workflow_executions DROP COLUMN owner, DROP COLUMN epoch")
            tx.execute("ALTER TABLE coordinations DROP COLUMN owner")
            tx.execute("ALTER TABLE agents DROP COLUMN session_replica")
            tx.execute(
                "DELETE FROM _migrations WHERE name IN ('watcher_0001', 'schedules_0001', 'cluster_0002_ownership')"
            )
            tx.execute("INSERT INTO members VALUES ('m1', 'a:1', '0.1', 1.0, 2.0, 0, 0)")
        assert sorted(r[0] for r in pg.query("SELECT name FROM _migrations")) == sorted(PG_BEFORE_WATCHER)
        assert migrate_pg(pg) == ["watcher_0001", "schedules_0001", "cluster_0002_ownership"]
        assert pg.query_one("SELECT address FROM members WHERE id = 'm1'")[0] == "a:1"
        assert pg.query_one("SELECT COUNT(*) FROM workflow_schedules")[0] == 0
    finally:
        pg.close()


def test_a_postgresql_log_from_before_the_newest_time_column_keeps_its_times_in_order(pg_dsn: str) -> None:
    """events_0003_newest_time fills the counter's time from the log, so the first append after the
    upgrade is not stamped earlier than the events already there (its clamp reads the counter row)."""
    from voltorch_server.components.events import EventLog, NewEvent
    from voltorch_server.storage.stores import SqlEvents

    pg = PgDatabase(pg_dsn)
    try:
        migrate_pg(pg)
        with pg.write() as tx:  # an event log as it was before the migration
            tx.execute("ALTER TABLE voltorch_counters DROP COLUMN time")
            tx.execute("DELETE FROM _migrations WHERE name = 'events_0003_newest_time'")
            tx.execute("UPDATE voltorch_counters SET value = 1 WHERE name = 'events'")
            tx.execute(
                "INSERT INTO events(seq, id, type, source, target, data, correlation_id, causation_id,"
                " priority, traceparent, tracestate, trace_id, span_id, time)"
                " VALUES (1, 'evt-old', 'x.y', '', '', 'null', '', '', 2, '', '', '', '', 2000000000.0)"
            )
        assert migrate_pg(pg) == ["events_0003_newest_time"]
        log = EventLog(SqlEvents(pg), clock=lambda: 1_000_000_000.0)
        new = log.publish_one(NewEvent("x.y")).event
        assert new.sequence == 2 and new.time == 2_000_000_000.0
        log.stop()
    finally:
        pg.close()
