"""The engines a server runs (events, state, coordination, workflows) built on one database by hand, for
component-level tests that run on SQLite and on PostgreSQL (`BOTH_BACKENDS` modules with `db`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.components.coordination import CoordinationEngine
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import StateStore
from voltorch_server.components.workflows import TERMINAL_EVENTS, Execution, WorkflowEngine
from voltorch_server.config import Config
from voltorch_server.storage.stores import Stores

WAIT = 20.0


@dataclass
class Engines:
    events: EventLog
    coordination: CoordinationEngine
    workflows: WorkflowEngine
    stores: Stores

    def stop(self) -> None:
        for c in (self.workflows, self.coordination, self.events):
            c.stop()

    def finished(self, execution_id: str) -> Execution:
        """The execution once terminal (waits on its terminal event, bounded)."""
        done = threading.Event()

        def on_event(e) -> None:
            if e.type in TERMINAL_EVENTS and e.correlation_id == execution_id:
                done.set()

        self.events.add_listener(on_event)
        if not self.workflows.get(execution_id).terminal:
            done.wait(WAIT)
        execution = self.workflows.get(execution_id)
        assert execution.terminal, execution.status
        return execution


def build(db) -> Engines:
    """Every component on `db` (state, events, coordination and workflows in one database); the agent
    definitions stored by an earlier build are redefined, as a restarted process would."""
    stores = Stores.build(db, db)
    events = EventLog(stores.events)
    state = StateStore(stores.state, events)
    coordination = CoordinationEngine(stores.coordination, events, Config(builtin_agents=False))
    workflows = WorkflowEngine(
        stores.executions.db,  # on PostgreSQL: one engine transaction at a time, as the server's
        events,
        state,
        coordination,
        executions=stores.executions,
        signals=stores.signals,
        timers=stores.timers,
        templates=stores.templates,
    )
    for c in (events, state, coordination, workflows):
        c.start()
    coordination.register_agent(
        "upper", kind="function", capabilities=("upper",), max_concurrency=20, runtime=upper, replace=True
    )
    return Engines(events, coordination, workflows, stores)


def upper(task: AgentTask, cancel: CancelSignal) -> str:
    return task.text.upper()
