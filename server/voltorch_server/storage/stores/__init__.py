"""The stores: all of voltorch's SQL, one module per concept, each written once in the SQL both SQLite and
PostgreSQL speak over the `Database`/`Tx` face, taking what must differ from `db.dialect`. Each implements
the store interface (a Protocol) its component declares; the app builds them (`Stores`) and passes them
to the components."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._serial_writes import SerialWrites
from .coordination import SqlCoordination
from .events import SqlEvents
from .members import SqlMembers
from .schedules import SqlSchedules
from .state import SqlState
from .system import SqlSystem
from .templates import SqlTemplates
from .workflows import SqlExecutions, SqlSignals, SqlTimers

__all__ = [
    "SqlCoordination",
    "SqlEvents",
    "SqlExecutions",
    "SqlMembers",
    "SqlSchedules",
    "SqlSignals",
    "SqlState",
    "SqlSystem",
    "SqlTemplates",
    "SqlTimers",
    "Stores",
]


@dataclass(frozen=True)
class Stores:
    """Every store of one server. All live in `shared` (PostgreSQL: every replica's) but the error log and
    metric history (`system`), in `local` (the same database on SQLite; this replica's own file beside
    PostgreSQL). Coordinations and workflows must share one database: a step's checkpoint and its
    coordination commit together."""

    state: SqlState
    events: SqlEvents
    system: SqlSystem
    schedules: SqlSchedules
    templates: SqlTemplates
    coordination: SqlCoordination
    executions: SqlExecutions
    signals: SqlSignals
    timers: SqlTimers
    members: SqlMembers

    @classmethod
    def build(cls, shared: Any, local: Any) -> Stores:
        events = SqlEvents(shared)
        # The engines' transactions one at a time within this replica, as on SQLite (storage/_serial_writes.py).
        engines = SerialWrites(shared) if shared.dialect.name == "postgres" else shared
        return cls(
            state=SqlState(shared),
            events=events,
            system=SqlSystem(local),
            schedules=SqlSchedules(engines),
            templates=SqlTemplates(engines),
            coordination=SqlCoordination(engines),
            executions=SqlExecutions(engines),
            signals=SqlSignals(engines),
            timers=SqlTimers(engines),
            members=SqlMembers(shared),
        )
