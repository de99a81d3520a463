"""The stores: all of voltorch's SQL, one module per concept, each written once in the SQL both SQLite and
PostgreSQL speak over the `Database`/`Tx` face, taking what must differ from `db.dialect`. Each implements
the store interface (a Protocol) its component declares; the app builds them (`Stores`) and passes them
to the components."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        # The engines' stores (schedules to timers) write one transaction at a time per replica, as on SQLite
        # (storage/_serial_writes.py: each wraps `shared` itself).
        return cls(
            state=SqlState(shared),
            events=SqlEvents(shared),
            system=SqlSystem(local),
            schedules=SqlSchedules(shared),
            templates=SqlTemplates(shared),
            coordination=SqlCoordination(shared),
            executions=SqlExecutions(shared),
            signals=SqlSignals(shared),
            timers=SqlTimers(shared),
            members=SqlMembers(shared),
        )
