"""PostgreSQL schema: the same named migrations as SQLite's (storage/sqlite/migrations.py), recorded in
`_migrations`. Several replicas starting together apply them once: the whole run holds a transaction-level
advisory lock. State, the event log and the cluster's members live here; the coordination, workflow,
schedule and system (errors, metric history) tables are created too, so their stores run on PostgreSQL
(the replicas keep using their local SQLite for them until issue 12 shares them). Times are DOUBLE PRECISION (SQLite's REAL is 8 bytes; PostgreSQL's is 4)."""

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


def _events_0003_newest_time(tx: PgTx) -> None:
    """The newest event time beside the events counter: an append that locks the row reads there the
    time its predecessor (on any replica) committed, in the same statement (`stores/events.py`)."""
    tx.execute("ALTER TABLE voltorch_counters ADD COLUMN time DOUBLE PRECISION NOT NULL DEFAULT 0")
    tx.execute(
        "UPDATE voltorch_counters SET time = (SELECT COALESCE(MAX(time), 0) FROM events) WHERE name = 'events'"
    )


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


def _workflows_0001(tx: PgTx) -> None:
    tx.execute(
        """CREATE TABLE workflow_templates (
            name TEXT NOT NULL COLLATE "C",
            version INTEGER NOT NULL,
            category TEXT NOT NULL,
            builtin INTEGER NOT NULL,
            digest TEXT NOT NULL,
            definition TEXT NOT NULL,
            create_time DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (name, version)
        )"""
    )
    tx.execute("CREATE INDEX workflow_templates_category ON workflow_templates(category, name, version)")
    tx.execute(
        """CREATE TABLE workflow_executions (
            id TEXT PRIMARY KEY COLLATE "C",
            request_id TEXT UNIQUE,
            request_digest TEXT NOT NULL,
            template_name TEXT NOT NULL COLLATE "C",
            template_version INTEGER NOT NULL,
            definition TEXT NOT NULL,
            status TEXT NOT NULL,
            parameters TEXT NOT NULL,
            result TEXT,
            error TEXT,
            priority INTEGER NOT NULL,
            labels TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            traceparent TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            create_time DOUBLE PRECISION NOT NULL,
            start_time DOUBLE PRECISION,
            end_time DOUBLE PRECISION,
            update_time DOUBLE PRECISION NOT NULL,
            run_elapsed DOUBLE PRECISION NOT NULL DEFAULT 0,
            run_since DOUBLE PRECISION
        )"""
    )
    tx.execute("CREATE INDEX workflow_executions_created ON workflow_executions(create_time, id)")
    tx.execute("CREATE INDEX workflow_executions_status ON workflow_executions(status, create_time)")
    tx.execute("CREATE INDEX workflow_executions_template ON workflow_executions(template_name, create_time)")
    tx.execute(
        """CREATE TABLE workflow_steps (
            execution_id TEXT NOT NULL REFERENCES workflow_executions(id) ON DELETE CASCADE,
            step_id TEXT NOT NULL COLLATE "C",
            parent_id TEXT NOT NULL COLLATE "C",
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            output TEXT NOT NULL,
            structured TEXT,
            error TEXT,
            agent_id TEXT NOT NULL,
            coordination_id TEXT NOT NULL,
            item TEXT,
            start_time DOUBLE PRECISION,
            end_time DOUBLE PRECISION,
            next_retry_time DOUBLE PRECISION,
            PRIMARY KEY (execution_id, step_id)
        )"""
    )


def _watcher_0001(tx: PgTx) -> None:
    """Recorded errors and metric history (storage/stores/system.py). Errors are listed and paged by seq
    within one replica (not tailed by position across replicas), so a serial numbers them."""
    tx.execute(
        """CREATE TABLE errors (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            component TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            details TEXT NOT NULL,
            event_seq BIGINT
        )"""
    )
    tx.execute("CREATE INDEX errors_trace ON errors(trace_id) WHERE trace_id != ''")
    tx.execute("CREATE INDEX errors_correlation ON errors(correlation_id) WHERE correlation_id != ''")
    tx.execute("CREATE INDEX errors_time ON errors(time)")
    tx.execute(
        """CREATE TABLE metric_samples (
            name TEXT NOT NULL COLLATE "C",
            attributes TEXT NOT NULL COLLATE "C",
            time DOUBLE PRECISION NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            histogram TEXT
        )"""
    )
    tx.execute("CREATE INDEX metric_samples_name ON metric_samples(name, time)")
    tx.execute("CREATE INDEX metric_samples_time ON metric_samples(time)")


def _coordination_0001(tx: PgTx) -> None:
    # "window" is a reserved word in PostgreSQL: the stores quote it.
    tx.execute(
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY COLLATE "C",
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            capabilities TEXT NOT NULL,
            max_concurrency INTEGER NOT NULL,
            llm TEXT,
            labels TEXT NOT NULL,
            register_time DOUBLE PRECISION NOT NULL,
            "window" TEXT NOT NULL,
            tasks_completed BIGINT NOT NULL,
            tasks_failed BIGINT NOT NULL,
            last_error TEXT,
            last_seen DOUBLE PRECISION
        )"""
    )
    tx.execute(
        """CREATE TABLE coordinations (
            id TEXT PRIMARY KEY COLLATE "C",
            request_id TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            source_agent_id TEXT NOT NULL,
            target_agent_id TEXT NOT NULL,
            requested_agent_ids TEXT NOT NULL,
            plan TEXT NOT NULL,
            agent_ids TEXT NOT NULL,
            required_capabilities TEXT NOT NULL,
            task TEXT NOT NULL,
            context TEXT NOT NULL,
            priority INTEGER NOT NULL,
            timeout DOUBLE PRECISION NOT NULL,
            deadline DOUBLE PRECISION NOT NULL,
            condition TEXT,
            correlation_id TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            traceparent TEXT NOT NULL,
            max_agents INTEGER NOT NULL,
            execution_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            attempts TEXT NOT NULL,
            results TEXT NOT NULL,
            output TEXT NOT NULL,
            structured_output TEXT,
            error TEXT,
            selection TEXT,
            create_time DOUBLE PRECISION NOT NULL,
            start_time DOUBLE PRECISION,
            end_time DOUBLE PRECISION
        )"""
    )
    tx.execute(
        "CREATE UNIQUE INDEX coordinations_request ON coordinations(request_id) WHERE request_id != ''"
    )
    tx.execute(
        "CREATE INDEX coordinations_active ON coordinations(status) WHERE status IN ('queued', 'running')"
    )
    tx.execute("CREATE INDEX coordinations_status ON coordinations(status, id)")
    tx.execute("CREATE INDEX coordinations_correlation ON coordinations(correlation_id, id)")


def _workflows_0002_usage(tx: PgTx) -> None:
    tx.execute("ALTER TABLE workflow_steps ADD COLUMN usage TEXT")
    tx.execute("ALTER TABLE workflow_executions ADD COLUMN usage TEXT")


def _coordination_0002_tools(tx: PgTx) -> None:
    tx.execute("ALTER TABLE agents ADD COLUMN tools TEXT")


def _workflows_0003_signals_timers(tx: PgTx) -> None:
    tx.execute(
        """CREATE TABLE workflow_signals (
            id TEXT PRIMARY KEY COLLATE "C",
            execution_id TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            request_id TEXT,
            request_digest TEXT NOT NULL,
            sender TEXT NOT NULL,
            create_time DOUBLE PRECISION NOT NULL,
            consumed_by TEXT,
            consume_time DOUBLE PRECISION
        )"""
    )
    tx.execute("CREATE INDEX workflow_signals_pending ON workflow_signals(execution_id, name, create_time)")
    tx.execute(
        "CREATE UNIQUE INDEX workflow_signals_request ON workflow_signals(execution_id, request_id)"
        " WHERE request_id IS NOT NULL"
    )
    tx.execute(
        """CREATE TABLE workflow_timers (
            execution_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            fire_at DOUBLE PRECISION NOT NULL,
            fired_at DOUBLE PRECISION,
            PRIMARY KEY (execution_id, step_id, kind)
        )"""
    )


def _schedules_0001(tx: PgTx) -> None:
    tx.execute(
        """CREATE TABLE workflow_schedules (
            id TEXT PRIMARY KEY COLLATE "C",
            template_name TEXT NOT NULL,
            template_version BIGINT NOT NULL,
            parameters TEXT NOT NULL,
            cron TEXT NOT NULL,
            interval DOUBLE PRECISION,
            start_time DOUBLE PRECISION,
            time_zone TEXT NOT NULL,
            overlap TEXT NOT NULL,
            catchup TEXT NOT NULL,
            paused INTEGER NOT NULL,
            description TEXT NOT NULL,
            next_tick DOUBLE PRECISION,
            last_tick DOUBLE PRECISION,
            last_execution_id TEXT,
            buffered_tick DOUBLE PRECISION,
            ticks_started BIGINT NOT NULL,
            ticks_skipped BIGINT NOT NULL,
            create_time DOUBLE PRECISION NOT NULL
        )"""
    )


def _cluster_0002_ownership(tx: PgTx) -> None:
    tx.execute("ALTER TABLE workflow_executions ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    tx.execute("ALTER TABLE workflow_executions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0")
    tx.execute("ALTER TABLE coordinations ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    tx.execute("ALTER TABLE agents ADD COLUMN session_replica TEXT NOT NULL DEFAULT ''")
    tx.execute(
        "CREATE INDEX workflow_executions_owned ON workflow_executions(owner, status)"
        " WHERE status IN ('pending','queued','running','paused')"
    )
    tx.execute(
        "CREATE INDEX coordinations_owned ON coordinations(owner) WHERE status IN ('queued','running')"
    )


MIGRATIONS: list[tuple[str, Callable[[PgTx], None]]] = [
    ("0001_state", _state_0001),
    ("0002_events", _events_0001),
    ("events_0002_compaction", _events_0002_compaction),
    ("workflows_0001", _workflows_0001),
    ("watcher_0001", _watcher_0001),
    ("coordination_0001", _coordination_0001),
    ("workflows_0002_usage", _workflows_0002_usage),
    ("coordination_0002_tools", _coordination_0002_tools),
    ("workflows_0003_signals_timers", _workflows_0003_signals_timers),
    ("schedules_0001", _schedules_0001),
    ("cluster_0001_members", _cluster_0001_members),
    ("cluster_0002_ownership", _cluster_0002_ownership),
    ("events_0003_newest_time", _events_0003_newest_time),
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
