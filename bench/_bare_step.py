"""A bound for `bench._step_cost --bare`: the workflow engine's coordination engine replaced by a facade
that runs an in-process agent directly and records nothing of it (no coordination row, no coordination
events, no selection, no agent span). What is left of a marginal step is the step's own checkpoint and
events, so the difference from the real step is what the coordination's record of it costs. A
measurement only, never a server's shape: nothing it ran could be found again after a restart.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any


class BareCoordination:
    """The part of the coordination engine the workflow engine's inline path calls, doing only the agent's
    run; everything else is the real engine's."""

    def __init__(self, real: Any, agent_id: str):
        self._real = real
        self._agent_id = agent_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def prepare(self, req: Any) -> Any:
        return SimpleNamespace(id=f"coord_{uuid.uuid4().hex[:24]}", req=req)

    def submit_in(self, tx: Any, prepared: Any) -> Any:
        return SimpleNamespace(id=prepared.id, inline=prepared, after=None, written=True)

    def run_after(self, after: Any) -> None:
        if after is not None:
            self._real.run_after(after)

    def run_inline(self, prepared: Any, traceparent: str = "") -> Any:
        from voltorch_server.agents.base import AgentTask, CancelSignal

        state = self._real.agents[self._agent_id]
        req = prepared.req
        task = AgentTask(
            task_id=f"{prepared.id}:0",
            coordination_id=prepared.id,
            text=req.task,
            context=dict(req.context or {}),
            capabilities=tuple(req.required_capabilities),
            traceparent=traceparent,
            execution_id=req.execution_id,
            step_id=req.step_id,
            agent_id=self._agent_id,
            agent_capabilities=state.capabilities,
        )
        return state.runtime.run(task, CancelSignal())

    def complete_in(self, tx: Any, prepared: Any, outcome: Any) -> tuple[Any, None]:
        result = SimpleNamespace(agent_id=self._agent_id, usage=outcome.usage)
        done = SimpleNamespace(
            id=prepared.id,
            status="completed",
            output=outcome.output,
            structured_output=outcome.structured_output,
            results=[result],
            error=None,
        )
        return done, None
