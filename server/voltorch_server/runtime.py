"""The components of one server and their lifecycle, independent of gRPC."""

from __future__ import annotations

import logging

from .components._base import Component
from .components.events import EventLog
from .components.state import StateStore
from .config import Config
from .storage import Database, migrate

log = logging.getLogger("voltorch")


class Runtime:
    def __init__(self, config: Config):
        self.config = config
        self.db = Database(config.db, synchronous=config.db_synchronous)
        migrate(self.db)
        self.events = EventLog(
            self.db,
            subscriber_buffer=config.subscriber_buffer,
            retention_seconds=config.event_retention_seconds,
            retention_count=config.event_retention_count,
            compaction_interval=config.event_compaction_interval,
        )
        self.state = StateStore(self.db, self.events, watch_buffer=config.subscriber_buffer)
        self.components: dict[str, Component] = {c.name: c for c in (self.events, self.state)}

    def start(self) -> None:
        for c in self.components.values():
            c.start()

    def stop(self) -> None:
        for c in reversed(list(self.components.values())):
            try:
                c.stop()
            except Exception:
                log.exception("stopping %s failed", c.name)
        self.db.close()
