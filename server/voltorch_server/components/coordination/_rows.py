"""A stored coordination row as the engine's `Coordination` (the rows come from `CoordinationPort`)."""

from __future__ import annotations

import json
from typing import Any

from ...priority import Priority
from ._model import AgentResult, Coordination, CoordinationCondition, Selection, TaskError


def from_row(row: Any) -> Coordination:
    """A persisted coordination (queue_position is only known for live ones: 0 here)."""
    plan = json.loads(row["plan"])
    agent_ids = json.loads(row["agent_ids"])
    return Coordination(
        id=row["id"],
        status=row["status"],
        mode=row["mode"],
        task=row["task"],
        request_id=row["request_id"],
        source_agent_id=row["source_agent_id"],
        target_agent_id=resolved_target(row["mode"], row["source_agent_id"], plan, agent_ids),
        agent_ids=tuple(agent_ids),
        required_capabilities=tuple(json.loads(row["required_capabilities"])),
        context=json.loads(row["context"]),
        priority=Priority(row["priority"]),
        timeout=row["timeout"],
        condition=CoordinationCondition.from_dict(json.loads(row["condition"]) if row["condition"] else None),
        correlation_id=row["correlation_id"],
        trace_id=row["trace_id"],
        results=tuple(AgentResult.from_dict(r) for r in json.loads(row["results"])),
        output=row["output"],
        structured_output=json.loads(row["structured_output"])
        if row["structured_output"] is not None
        else None,
        error=TaskError.from_dict(json.loads(row["error"]) if row["error"] else None),
        selection=Selection.from_dict(json.loads(row["selection"]) if row["selection"] else None),
        create_time=row["create_time"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        execution_id=row["execution_id"],
        step_id=row["step_id"],
    )


def resolved_target(mode: str, source: str, plan: list[str], agent_ids: list[str]) -> str:
    """The target of SEQUENTIAL/CONDITIONAL after selection: the slot after the source (or the only slot)."""
    if mode not in ("sequential", "conditional") or not agent_ids:
        return ""
    i = 1 if source and plan and plan[0] == source else 0
    return agent_ids[i] if i < len(agent_ids) else ""
