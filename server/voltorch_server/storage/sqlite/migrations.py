"""Named, ordered schema migrations, recorded in `_migrations` so each runs exactly once.

Tables and indexes are made with sqlite-utils (`create`, `create_index`; a later change of a table's
columns is a `transform`) wherever it can say what the schema needs. Raw SQL remains only for what its
public API cannot express: WITHOUT ROWID tables, AUTOINCREMENT (sequences never reused after retention
deletes rows), partial indexes, CHECK constraints, UNIQUE columns and ON DELETE CASCADE.

Append new migrations at the end of MIGRATIONS; a shipped migration may only be rewritten into one that
builds the same schema (tests/server/test_migrations.py compares with a database made by 0.1.0).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

from .db import Database, Tx


def _schema(tx: Tx) -> sqlite_utils.Database:
    """sqlite-utils over the transaction's connection: its statements join the open transaction."""
    return sqlite_utils.Database(tx.conn, recursive_triggers=False, execute_plugins=False)


def _state_0001(tx: Tx) -> None:
    tx.execute(
        """CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            version INTEGER NOT NULL,
            create_revision INTEGER NOT NULL,
            mod_revision INTEGER NOT NULL,
            expire_at REAL,
            update_time REAL NOT NULL
        ) WITHOUT ROWID"""
    )
    tx.execute("CREATE INDEX kv_expire ON kv(expire_at) WHERE expire_at IS NOT NULL")
    # One row per change of a key; several rows share a revision when a transaction wrote them.
    tx.execute(
        """CREATE TABLE kv_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            revision INTEGER NOT NULL,
            key TEXT NOT NULL,
            type TEXT NOT NULL,
            value TEXT,
            version INTEGER NOT NULL,
            create_revision INTEGER NOT NULL,
            expire_at REAL,
            update_time REAL NOT NULL,
            prev_value TEXT,
            prev_version INTEGER,
            prev_mod_revision INTEGER
        )"""
    )
    db = _schema(tx)
    db.table("kv_history").create_index(["key", "id"], "kv_history_key")
    db.table("kv_history").create_index(["revision"], "kv_history_revision")
    tx.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
    tx.execute("INSERT INTO meta(name, value) VALUES ('revision', 0)")
    db.table("snapshots").create(
        {
            "id": str,
            "revision": int,
            "prefix": str,
            "description": str,
            "key_count": int,
            "create_time": float,
        },
        pk="id",
        not_null={"revision", "prefix", "description", "key_count", "create_time"},
    )
    tx.execute(
        """CREATE TABLE snapshot_items (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            expire_at REAL,
            PRIMARY KEY (snapshot_id, key)
        ) WITHOUT ROWID"""
    )


def _events_0001(tx: Tx) -> None:
    tx.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
            time REAL NOT NULL
        )"""
    )
    tx.execute("CREATE INDEX events_correlation ON events(correlation_id, seq) WHERE correlation_id != ''")
    _schema(tx).table("events").create_index(["time"], "events_time")
    tx.execute("CREATE INDEX events_trace ON events(trace_id) WHERE trace_id != ''")


def _events_0002_compaction(tx: Tx) -> None:
    # What retention has removed: every event with seq <= through_seq (the newest was at through_time).
    tx.execute(
        """CREATE TABLE event_compaction (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            through_seq INTEGER NOT NULL,
            through_time REAL NOT NULL
        )"""
    )
    tx.execute("INSERT INTO event_compaction(id, through_seq, through_time) VALUES (1, 0, 0)")


def _workflows_0001(tx: Tx) -> None:
    db = _schema(tx)
    templates = {
        "name": str,
        "version": int,
        "category": str,
        "builtin": int,
        "digest": str,
        "definition": str,
        "create_time": float,
    }
    db.table("workflow_templates").create(templates, pk=("name", "version"), not_null=set(templates))
    db.table("workflow_templates").create_index(
        ["category", "name", "version"], "workflow_templates_category"
    )
    # One row per execution; `definition` is the template as this execution runs it (options applied).
    # run_elapsed + (now - run_since) is the running time counted against the workflow timeout.
    tx.execute(
        """CREATE TABLE workflow_executions (
            id TEXT PRIMARY KEY,
            request_id TEXT UNIQUE,
            request_digest TEXT NOT NULL,
            template_name TEXT NOT NULL,
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
            create_time REAL NOT NULL,
            start_time REAL,
            end_time REAL,
            update_time REAL NOT NULL,
            run_elapsed REAL NOT NULL DEFAULT 0,
            run_since REAL
        )"""
    )
    executions = db.table("workflow_executions")
    executions.create_index(["create_time", "id"], "workflow_executions_created")
    executions.create_index(["status", "create_time"], "workflow_executions_status")
    executions.create_index(["template_name", "create_time"], "workflow_executions_template")
    # One row per step; fan-out children have parent_id set and step_id "<parent>[<index>]".
    tx.execute(
        """CREATE TABLE workflow_steps (
            execution_id TEXT NOT NULL REFERENCES workflow_executions(id) ON DELETE CASCADE,
            step_id TEXT NOT NULL,
            parent_id TEXT NOT NULL,
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
            start_time REAL,
            end_time REAL,
            next_retry_time REAL,
            PRIMARY KEY (execution_id, step_id)
        )"""
    )


def _watcher_0001(tx: Tx) -> None:
    # Errors recorded by components and RPCs; event_seq is the system.error event written with it.
    tx.execute(
        """CREATE TABLE errors (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            component TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            time REAL NOT NULL,
            details TEXT NOT NULL,
            event_seq INTEGER
        )"""
    )
    tx.execute("CREATE INDEX errors_trace ON errors(trace_id) WHERE trace_id != ''")
    tx.execute("CREATE INDEX errors_correlation ON errors(correlation_id) WHERE correlation_id != ''")
    db = _schema(tx)
    db.table("errors").create_index(["time"], "errors_time")
    # Metric history: one row per series per collection interval.
    samples = db.table("metric_samples")
    samples.create(
        {"name": str, "attributes": str, "time": float, "value": float, "histogram": str},
        not_null={"name", "attributes", "time", "value"},
    )
    samples.create_index(["name", "time"], "metric_samples_name")
    samples.create_index(["time"], "metric_samples_time")


def _coordination_0001(tx: Tx) -> None:
    # Agent definitions and statistics (window = the last 100 outcomes as [ok, latency]).
    tx.execute(
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            capabilities TEXT NOT NULL,
            max_concurrency INTEGER NOT NULL,
            llm TEXT,
            labels TEXT NOT NULL,
            register_time REAL NOT NULL,
            window TEXT NOT NULL,
            tasks_completed INTEGER NOT NULL,
            tasks_failed INTEGER NOT NULL,
            last_error TEXT,
            last_seen REAL
        ) WITHOUT ROWID"""
    )
    # One row per coordination; `plan` lists the slots (agent id, or "" = selected), `agent_ids` the
    # resolved participants; results/attempts grow as tasks finish / are dispatched.
    tx.execute(
        """CREATE TABLE coordinations (
            id TEXT PRIMARY KEY,
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
            timeout REAL NOT NULL,
            deadline REAL NOT NULL,
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
            create_time REAL NOT NULL,
            start_time REAL,
            end_time REAL
        ) WITHOUT ROWID"""
    )
    tx.execute(
        "CREATE UNIQUE INDEX coordinations_request ON coordinations(request_id) WHERE request_id != ''"
    )
    tx.execute(
        "CREATE INDEX coordinations_active ON coordinations(status) WHERE status IN ('queued', 'running')"
    )
    coordinations = _schema(tx).table("coordinations")
    coordinations.create_index(["status", "id"], "coordinations_status")
    coordinations.create_index(["correlation_id", "id"], "coordinations_correlation")


def _workflows_0002_usage(tx: Tx) -> None:
    """Usage (tokens in/out, cost, model calls; JSON) per step and per execution, for budgets."""
    schema = _schema(tx)
    schema.table("workflow_steps").add_column("usage", str)
    schema.table("workflow_executions").add_column("usage", str)


def _coordination_0002_tools(tx: Tx) -> None:
    """The functions an agent offers to tool-calling LLM agents (JSON list of tool specs)."""
    _schema(tx).table("agents").add_column("tools", str)


def _workflows_0003_signals_timers(tx: Tx) -> None:
    """Signals sent to executions (kept until a wait consumes them) and durable step timers."""
    db = _schema(tx)
    signals = db.table("workflow_signals")
    signals.create(
        {
            "id": str,
            "execution_id": str,
            "name": str,
            "payload": str,
            "request_id": str,
            "request_digest": str,
            "sender": str,
            "create_time": float,
            "consumed_by": str,
            "consume_time": float,
        },
        pk="id",
        not_null={"execution_id", "name", "payload", "request_digest", "sender", "create_time"},
    )
    signals.create_index(["execution_id", "name", "create_time"], "workflow_signals_pending")
    # A request id names one signal of one execution (partial: most signals have none).
    tx.execute(
        "CREATE UNIQUE INDEX workflow_signals_request ON workflow_signals(execution_id, request_id)"
        " WHERE request_id IS NOT NULL"
    )
    # One timer per (step, kind); fired_at is set in the checkpoint that acts on it, so it fires once.
    tx.execute(
        """CREATE TABLE workflow_timers (
            execution_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            fire_at REAL NOT NULL,
            fired_at REAL,
            PRIMARY KEY (execution_id, step_id, kind)
        ) WITHOUT ROWID"""
    )


def _schedules_0001(tx: Tx) -> None:
    """Schedules: a template started on a cron expression or an interval; next_tick is the durable cursor."""
    db = _schema(tx)
    db.table("workflow_schedules").create(
        {
            "id": str,
            "template_name": str,
            "template_version": int,
            "parameters": str,
            "cron": str,
            "interval": float,
            "start_time": float,
            "time_zone": str,
            "overlap": str,
            "catchup": str,
            "paused": int,
            "description": str,
            "next_tick": float,
            "last_tick": float,
            "last_execution_id": str,
            "buffered_tick": float,
            "ticks_started": int,
            "ticks_skipped": int,
            "create_time": float,
        },
        pk="id",
        not_null={
            "template_name",
            "template_version",
            "parameters",
            "cron",
            "time_zone",
            "overlap",
            "catchup",
            "paused",
            "description",
            "ticks_started",
            "ticks_skipped",
            "create_time",
        },
    )


def _cluster_0001_members(tx: Tx) -> None:
    """The cluster's members (storage/stores/members.py): on SQLite, the one server."""
    _schema(tx).table("members").create(
        {
            "id": str,
            "address": str,
            "version": str,
            "start_time": float,
            "heartbeat_time": float,
            "running_executions": int,
            "connected_workers": int,
        },
        pk="id",
        not_null={
            "address",
            "version",
            "start_time",
            "heartbeat_time",
            "running_executions",
            "connected_workers",
        },
    )


def _cluster_0002_ownership(tx: Tx) -> None:
    """Who runs what (components/workflows/_ownership.py): an execution's owner replica and the epoch that
    fences its writes; a coordination's owner replica; the replica a remote worker's session is on."""
    schema = _schema(tx)
    schema.table("workflow_executions").add_column("owner", str, not_null_default="")
    schema.table("workflow_executions").add_column("epoch", int, not_null_default=0)
    schema.table("coordinations").add_column("owner", str, not_null_default="")
    schema.table("agents").add_column("session_replica", str, not_null_default="")
    tx.execute(
        "CREATE INDEX workflow_executions_owned ON workflow_executions(owner, status)"
        " WHERE status IN ('pending','queued','running','paused')"
    )
    tx.execute(
        "CREATE INDEX coordinations_owned ON coordinations(owner) WHERE status IN ('queued','running')"
    )


def _events_0003_newest_time(tx: Tx) -> None:
    """PostgreSQL keeps the newest event time in its events counter row; SQLite has no counter rows (its
    single writer reads the newest time once and keeps it in memory): nothing to change here."""


MIGRATIONS: list[tuple[str, Callable[[Tx], None]]] = [
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


MIGRATIONS_TABLE = "_migrations"


def migrate(db: Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    with db.write() as tx:
        _schema(tx).table(MIGRATIONS_TABLE).create(
            {"name": str, "applied_at": float}, pk="name", not_null={"applied_at"}, if_not_exists=True
        )
        done = {row[0] for row in tx.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with db.write() as tx:
            fn(tx)
            tx.execute(f"INSERT INTO {MIGRATIONS_TABLE}(name, applied_at) VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied
