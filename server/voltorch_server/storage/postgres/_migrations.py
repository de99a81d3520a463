"""PostgreSQL schema: the same named migrations as SQLite's (storage/sqlite/migrations.py) for what PostgreSQL
holds in this version, state, the event log and the cluster's members, recorded in `_migrations`. Several
replicas starting together apply them once: the whole run holds a transaction-level advisory lock."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..sqlite.migrations import MIGRATIONS_TABLE
from ._db import PgDatabase, PgTx

MIGRATE_LOCK = 0x766F6C74  # "volt": the advisory lock key of schema migrations


def _state_0001(tx: PgTx) -> None:
    tx.execute(
        """CREATE TABLE kv (
            key TEXT PRIMARY KEY COLLATE "C",
            value TEXT NOT NULL,
            version BIGINT NOT NULL,
            create_revision BIGINT NOT NULL,
            mod_revision BIGINT NOT NULL,
            expire_at DOUBLE PRECISION,
            update_time DOUBLE PRECISION NOT NULL
        )"""
    )
    tx.execute("CREATE INDEX kv_expire ON kv(expire_at) WHERE expire_at IS NOT NULL")
    tx.execute(
        """CREATE TABLE kv_history (
            id BIGINT PRIMARY KEY,
            revision BIGINT NOT NULL,
            key TEXT NOT NULL COLLATE "C",
            type TEXT NOT NULL,
            value TEXT,
            version BIGINT NOT NULL,
            create_revision BIGINT NOT NULL,
            expire_at DOUBLE PRECISION,
            update_time DOUBLE PRECISION NOT NULL,
            prev_value TEXT,
            prev_version BIGINT,
            prev_mod_revision BIGINT
        )"""
    )
    tx.execute("CREATE INDEX kv_history_key ON kv_history(key, id)")
    tx.execute("CREATE INDEX kv_history_revision ON kv_history(revision)")
    tx.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
    tx.execute("INSERT INTO meta(name, value) VALUES ('revision', 0)")
    # The numbers SQLite's AUTOINCREMENT hands out, as rows locked by the writing transaction (see _db).
    tx.execute("CREATE TABLE voltorch_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
    tx.execute("INSERT INTO voltorch_counters(name, value) VALUES ('kv_history', 0)")
    tx.execute(
        """CREATE TABLE snapshots (
            id TEXT PRIMARY KEY,
            seq BIGSERIAL UNIQUE,
            revision BIGINT NOT NULL,
            prefix TEXT NOT NULL,
            description TEXT NOT NULL,
            key_count BIGINT NOT NULL,
            create_time DOUBLE PRECISION NOT NULL
        )"""
    )
    tx.execute(
        """CREATE TABLE snapshot_items (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
            key TEXT NOT NULL COLLATE "C",
            value TEXT NOT NULL,
            expire_at DOUBLE PRECISION,
            PRIMARY KEY (snapshot_id, key)
        )"""
    )


def _events_0001(tx: PgTx) -> None:
    tx.execute(
        """CREATE TABLE events (
            seq BIGINT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            data TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            causation_id TEXT NOT NULL,
            priority INTEGER NOT NULL,
            traceparent TEXT NOT NULL,
            tracestate TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            time DOUBLE PRECISION NOT NULL
        )"""
    )
    tx.execute("CREATE INDEX events_correlation ON events(correlation_id, seq) WHERE correlation_id != ''")
    tx.execute("CREATE INDEX events_time ON events(time)")
    tx.execute("CREATE INDEX events_trace ON events(trace_id) WHERE trace_id != ''")
    tx.execute("INSERT INTO voltorch_counters(name, value) VALUES ('events', 0)")


def _events_0002_compaction(tx: PgTx) -> None:
    tx.execute(
        """CREATE TABLE event_compaction (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            through_seq BIGINT NOT NULL,
            through_time DOUBLE PRECISION NOT NULL
        )"""
    )
    tx.execute("INSERT INTO event_compaction(id, through_seq, through_time) VALUES (1, 0, 0)")


def _cluster_0001_members(tx: PgTx) -> None:
    """The replicas of the cluster, each refreshing its row by heartbeat (storage/stores/members.py)."""
    tx.execute(
        """CREATE TABLE members (
            id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            version TEXT NOT NULL,
            start_time DOUBLE PRECISION NOT NULL,
            heartbeat_time DOUBLE PRECISION NOT NULL,
            running_executions BIGINT NOT NULL,
            connected_workers BIGINT NOT NULL
        )"""
    )


MIGRATIONS: list[tuple[str, Callable[[PgTx], None]]] = [
    ("0001_state", _state_0001),
    ("0002_events", _events_0001),
    ("events_0002_compaction", _events_0002_compaction),
    ("cluster_0001_members", _cluster_0001_members),
]


def migrate(db: PgDatabase) -> list[str]:
    """Apply every migration not yet recorded, all in one transaction under an advisory lock: replicas
    starting together wait for the first, then find nothing left to do."""
    applied = []
    with db.write() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {row[0] for row in tx.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            fn(tx)
            tx.execute(f"INSERT INTO {MIGRATIONS_TABLE}(name, applied_at) VALUES (?, ?)", (name, time.time()))
            applied.append(name)
    return applied
