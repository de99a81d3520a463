"""The engine's toolbox: the tools agents offer (Agent.tools), found by name, and each call of one by a
tool-calling LLM agent run as a child coordination on the offering agent — with the caller's correlation,
execution and step, in the caller's trace — announced by an `agent.tool.called` event."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ...agents.base import (
    NO_USAGE,
    AgentError,
    AgentTask,
    CancelSignal,
    TokenUsage,
    Toolbox,
    ToolResult,
    ToolSpec,
)
from ...errors import VoltorchError
from ...telemetry import current_trace
from ..events import NewEvent
from ._model import CoordinationRequest
from ._runs import SOURCE

if TYPE_CHECKING:
    from ._engine import CoordinationEngine

TOOL_EVENT = "agent.tool.called"
TOOL_TIMEOUT = 300.0  # a call's own limit when the calling task has no deadline


class EngineToolbox(Toolbox):
    def __init__(self, engine: CoordinationEngine):
        self.engine = engine

    def check_budget(self, task: AgentTask, used: TokenUsage) -> None:
        check = self.engine.budget_check
        if check is None or not task.execution_id:
            return
        try:
            check(task.execution_id, used)
        except VoltorchError as exc:
            raise AgentError(exc.message, code=exc.reason) from None

    def _find(self, name: str) -> tuple[str, ToolSpec] | None:
        return self.engine.tool_offer(name)

    def specs(self, names: tuple[str, ...]) -> list[ToolSpec]:
        found = []
        for name in names:
            offer = self._find(name)
            if offer is None:
                raise AgentError(f"no registered agent offers the tool {name!r}", code="TOOL_NOT_FOUND")
            found.append(offer[1])
        return found

    def call(
        self, task: AgentTask, name: str, arguments: dict[str, Any], cancel: CancelSignal | None = None
    ) -> ToolResult:
        if cancel is not None and cancel.is_set():  # the caller is gone: its tool must not even begin
            return ToolResult("", error=f"cancelled: {cancel.reason}")
        offer = self._find(name)
        if offer is None:
            return ToolResult("", error=f"no registered agent offers the tool {name!r}")
        agent_id, _ = offer
        remaining = task.remaining(time.time())
        timeout = TOOL_TIMEOUT if remaining is None else max(0.001, remaining)
        req = CoordinationRequest(
            task=f"Tool call: {name}({json.dumps(arguments, sort_keys=True)})",
            target_agent_id=agent_id,
            context={
                "tool": name,
                "arguments": arguments,
                "parent_coordination_id": task.coordination_id,
                "parent_task_id": task.task_id,
            },
            priority=task.priority,
            timeout=timeout,
            correlation_id=task.correlation_id,
            traceparent=current_trace().traceparent or task.traceparent,
            execution_id=task.execution_id,
            step_id=task.step_id,
        )
        try:
            child = self.engine.request(req)
            self.engine.events.publish(
                NewEvent(
                    type=TOOL_EVENT,
                    source=SOURCE,
                    data={
                        "tool": name,
                        "arguments": arguments,
                        "agent_id": agent_id,
                        "coordination_id": child.id,
                        "caller_agent_id": task.agent_id,
                        "parent_coordination_id": task.coordination_id,
                        "execution_id": task.execution_id,
                        "step_id": task.step_id,
                    },
                    correlation_id=task.correlation_id,
                    priority=task.priority,
                    traceparent=req.traceparent,
                )
            )
            done = self._wait(child.id, timeout + 1.0, cancel)
        except VoltorchError as exc:
            return ToolResult("", agent_id=agent_id, error=exc.message)
        usage = sum((r.usage for r in done.results), NO_USAGE)
        if done.status != "completed":
            why = done.error.message if done.error else f"the tool's coordination ended {done.status}"
            return ToolResult("", done.id, agent_id, why, usage)
        return ToolResult(done.output, done.id, agent_id, usage=usage)

    def _wait(self, child_id: str, timeout: float, cancel: CancelSignal | None) -> Any:
        """The call's coordination once it ended; cancelled with the calling task (an execution cancelled
        or timed out), so the tool does not run on, holding its agent, for a caller that is gone."""

        def stop(reason: str) -> None:
            try:
                self.engine.cancel(child_id, f"the calling task stopped: {reason}")
            except VoltorchError:  # ended meanwhile
                pass

        if cancel is not None:
            cancel.add_callback(stop)
        try:
            return self.engine.wait(child_id, timeout)
        finally:
            if cancel is not None:
                cancel.remove_callback(stop)
