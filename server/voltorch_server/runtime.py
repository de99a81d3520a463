"""The components of one server and their lifecycle, independent of gRPC."""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from .agents.limiter import Limiters
from .agents.llm import limit_settings
from .agents.llm_clients import InProcessCalls
from .agents.llm_process import ProcessCalls
from .components import Component
from .components.cluster import Cluster, new_replica_id
from .components.coordination import CoordinationEngine
from .components.events import EventLog
from .components.llm import LlmEndpoints
from .components.schedules import Scheduler
from .components.state import StateStore
from .components.system import ErrorLog, Storage, Watcher
from .components.workflows import Ownership, WorkflowEngine
from .config import Config
from .errors import StartupError
from .metrics import Metrics
from .storage import Database, OwnerLock, is_postgres_url, migrate, open_database
from .storage.stores import Stores
from .telemetry import Tracing

log = logging.getLogger("voltorch")


def local_db_path(config: Config) -> str:
    """This replica's own SQLite file beside a shared PostgreSQL (see Config.local_db)."""
    if config.local_db:
        return config.local_db
    return ":memory:" if config.port == 0 else f"./voltorch-replica-{config.port}.db"


class Runtime:
    def __init__(self, config: Config):
        self.config = config
        # Everything but the error log and metric history lives in `db` (PostgreSQL: shared by every
        # replica); those in `local_db`, the same database on SQLite and this replica's own file beside
        # PostgreSQL.
        shared = open_database(config.db) if is_postgres_url(config.db) else None
        local = local_db_path(config) if shared is not None else config.db
        # One server per SQLite file: the owner lock first, before anything reads or recovers the file.
        self.owner = OwnerLock(local).acquire() if local != ":memory:" else None
        try:
            self.local_db = _open_database(config, local)
        except BaseException:
            self.release_owner()
            if shared is not None:
                shared.close()
            raise
        self.db: Any = shared if shared is not None else self.local_db
        self.replica_id = config.replica_id or new_replica_id()
        # The SQL of every component, in one store per concept (storage/stores), handed to each below.
        self.stores = stores = Stores.build(self.db, self.local_db)
        self.storage = Storage(self.local_db, shared=shared)
        self.tracing = Tracing.from_config(config)  # exporters attached while running
        self.metrics = Metrics.for_server(config)  # this server's own MeterProvider
        self.events = EventLog(
            stores.events,
            subscriber_buffer=config.subscriber_buffer,
            retention_seconds=config.event_retention_seconds,
            retention_count=config.event_retention_count,
            compaction_interval=config.event_compaction_interval,
        )
        self.errors = ErrorLog(stores.system, self.events, self.metrics)
        self.state = StateStore(stores.state, self.events, watch_buffer=config.subscriber_buffer)
        # One limiter per LLM endpoint, shared by every LLM agent; growing windows admit more workflows.
        self.limiters = Limiters(limit_settings(config), on_grow=lambda: self.workflows.wake_admission())
        self.metrics.observe_llm_endpoints(self.limiters.snapshots)
        # The LLM agents' HTTP calls: in a child process by default, off this process's GIL.
        self.llm_calls = InProcessCalls() if config.llm_in_process else ProcessCalls()
        self.llm = LlmEndpoints(self.limiters, self.llm_calls)
        self.coordination = CoordinationEngine(
            stores.coordination,
            self.events,
            config,
            limiters=self.limiters,
            llm_calls=self.llm_calls,
            owner=self.replica_id,
            shared=shared is not None,
        )
        self.workflows = WorkflowEngine(
            stores.executions.db,
            self.events,
            self.state,
            self.coordination,
            executions=stores.executions,
            signals=stores.signals,
            timers=stores.timers,
            templates=stores.templates,
            concurrency=config.workflow_concurrency,
            threads=config.workflow_threads,
            llm_capacity=self.limiters.capacity,
            ownership=Ownership(
                self.replica_id, shared=shared is not None, member_timeout=config.member_timeout
            ),
        )
        self.schedules = Scheduler(stores.schedules, self.workflows)
        # Members live beside state and events: on PostgreSQL every replica sees every other one.
        self.cluster = Cluster(
            stores.members,
            replica_id=self.replica_id,
            timeout=config.member_timeout,
            retention=config.member_retention,
            load=self._load,
        )
        self.components: dict[str, Component] = {
            c.name: c
            for c in (
                self.storage,
                self.events,
                self.state,
                self.llm,
                self.coordination,
                self.workflows,
                self.schedules,
                self.cluster,
            )
        }

        # The watcher watches every component in the dict (also ones added after this line).
        self.watcher = Watcher(
            config,
            self.components,
            store=stores.system,
            events=self.events,
            errors=self.errors,
            metrics=self.metrics,
        )
        self.components[self.watcher.name] = self.watcher

    def _load(self) -> tuple[int, int]:
        """What this replica runs, for its heartbeat: (running executions, connected workers)."""
        workflows, coordination = self.workflows.details(), self.coordination.details()
        return int(workflows["active_workflows"]), int(coordination["connected_workers"])

    def start(self) -> None:
        self.tracing.start()
        for c in self.components.values():
            c.metrics, c.error_log = self.metrics, self.errors
        for c in self.components.values():
            if c is not self.watcher:
                c.start()
        self.watcher.start()  # last: its first check round sees every component started

    def stop_components(self) -> None:
        """Stop the watcher (no restarts meanwhile), then every component in reverse start order: a
        component stops before those it uses (workflows before coordination before state and events), so
        none sees a dependency gone and mistakes the shutdown for a failure (a retried step). Idempotent."""
        self.watcher.stop()
        for c in reversed(list(self.components.values())):
            try:
                c.stop()
            except Exception:
                log.exception("stopping %s failed", c.name)

    def stop(self) -> None:
        self.stop_components()
        self.llm_calls.close()
        self.cluster.leave()
        self.tracing.stop()
        self.metrics.shutdown()
        if self.local_db is not self.db:
            self.local_db.close()
        self.db.close()
        self.release_owner()

    def close_unstarted(self) -> None:
        """Give back the database and its owner lock when the server failed before it started."""
        self.llm_calls.close()
        self.metrics.shutdown()
        if self.local_db is not self.db:
            self.local_db.close()
        self.db.close()
        self.release_owner()

    def release_owner(self) -> None:
        if self.owner is not None:
            self.owner.release()


def _open_database(config: Config, path: str) -> Database:
    """The migrated database, or a StartupError naming the path: a directory, unwritable, not SQLite, or
    damaged (DatabaseCorrupt, from PRAGMA quick_check: queries reaching a damaged page would fail later)."""
    if os.path.isdir(config.db):  # SQLite would say only "unable to open database file"
        raise StartupError(f"cannot open database {config.db}: it is a directory; --db takes a file path")
    db: Database | None = None
    try:
        db = Database(path, synchronous=config.db_synchronous, group_max=config.db_group_commit)
        if config.db_quick_check:
            db.check_integrity().raise_if_damaged()
        migrate(db)
        return db
    except BaseException as exc:
        if db is not None:
            db.close()
        if isinstance(exc, sqlite3.Error | OSError):
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StartupError(f"cannot open database {path}: {reason}") from None
        raise
