"""The components of one server and their lifecycle, independent of gRPC."""

from __future__ import annotations

import logging

from .components import Component
from .components.coordination import CoordinationEngine
from .components.events import EventLog
from .components.schedules import Scheduler
from .components.state import StateStore
from .components.system import ErrorLog, Watcher
from .components.workflows import WorkflowEngine
from .config import Config
from .metrics import Metrics
from .storage import Database, migrate
from .telemetry import Tracing

log = logging.getLogger("voltorch")


class Runtime:
    def __init__(self, config: Config):
        self.config = config
        self.db = Database(config.db, synchronous=config.db_synchronous)
        migrate(self.db)
        self.tracing = Tracing.from_config(config)  # exporters attached while running
        self.metrics = Metrics.for_server(config)  # this server's own MeterProvider
        self.events = EventLog(
            self.db,
            subscriber_buffer=config.subscriber_buffer,
            retention_seconds=config.event_retention_seconds,
            retention_count=config.event_retention_count,
            compaction_interval=config.event_compaction_interval,
        )
        self.errors = ErrorLog(self.db, self.events, self.metrics)
        self.state = StateStore(self.db, self.events, watch_buffer=config.subscriber_buffer)
        self.coordination = CoordinationEngine(self.db, self.events, config)
        self.workflows = WorkflowEngine(
            self.db,
            self.events,
            self.state,
            self.coordination,
            concurrency=config.workflow_concurrency,
            threads=config.workflow_threads,
        )
        self.schedules = Scheduler(self.db, self.workflows)
        self.components: dict[str, Component] = {
            c.name: c for c in (self.events, self.state, self.coordination, self.workflows, self.schedules)
        }

        # The watcher watches every component in the dict (also ones added after this line).
        self.watcher = Watcher(
            config, self.components, db=self.db, events=self.events, errors=self.errors, metrics=self.metrics
        )
        self.components[self.watcher.name] = self.watcher

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
        self.tracing.stop()
        self.metrics.shutdown()
        self.db.close()
