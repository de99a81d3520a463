"""SQL of the coordination engine: the `agents` and `coordinations` tables (schema in
storage/sqlite/migrations.py, `coordination_0001`). Rows in, dataclasses out; no engine state here."""

from __future__ import annotations

import json
from typing import Any

from ...priority import Priority
from ...storage import Database, Tx
from ._agents import AgentState
from ._model import AgentResult, Coordination, CoordinationCondition, Selection, TaskError


def _j(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# -- agents ----------------------------------------------------------------------------------------


def load_agents(db: Database) -> list[AgentState]:
    return [AgentState.from_row(r) for r in db.query("SELECT * FROM agents ORDER BY id")]


def insert_agent(tx: Tx, a: AgentState) -> None:
    tx.execute(
        "INSERT INTO agents(id, name, kind, capabilities, max_concurrency, llm, labels, tools, register_time,"
        " window, tasks_completed, tasks_failed, last_error, last_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (a.id, *a.definition_params(), a.register_time, *a.stats_params()),
    )


def update_agent_definition(tx: Tx, a: AgentState) -> None:
    tx.execute(
        "UPDATE agents SET name=?, kind=?, capabilities=?, max_concurrency=?, llm=?, labels=?, tools=?"
        " WHERE id=?",
        (*a.definition_params(), a.id),
    )


def update_agent_stats(tx: Tx, a: AgentState) -> None:
    tx.execute(
        "UPDATE agents SET window=?, tasks_completed=?, tasks_failed=?, last_error=?, last_seen=? WHERE id=?",
        (*a.stats_params(), a.id),
    )


def delete_agent(tx: Tx, agent_id: str) -> None:
    tx.execute("DELETE FROM agents WHERE id=?", (agent_id,))


# -- coordinations ---------------------------------------------------------------------------------

INSERT_COLUMNS = (
    "id, request_id, request_hash, mode, status, source_agent_id, target_agent_id, requested_agent_ids,"
    " plan, agent_ids, required_capabilities, task, context, priority, timeout, deadline, condition,"
    " correlation_id, trace_id, traceparent, max_agents, execution_id, step_id, attempts, results, output,"
    " structured_output, error, selection, create_time, start_time, end_time"
)


def insert_coordination(tx: Tx, row: dict[str, Any]) -> None:
    cols = [c.strip() for c in INSERT_COLUMNS.split(",")]
    tx.execute(
        f"INSERT INTO coordinations({INSERT_COLUMNS}) VALUES ({','.join('?' * len(cols))})",
        tuple(row[c] for c in cols),
    )


def update_coordination(tx: Tx, row: dict[str, Any]) -> None:
    """Write the mutable columns of a coordination."""
    tx.execute(
        "UPDATE coordinations SET status=?, agent_ids=?, attempts=?, results=?, output=?, structured_output=?,"
        " error=?, selection=?, start_time=?, end_time=? WHERE id=?",
        (
            row["status"],
            row["agent_ids"],
            row["attempts"],
            row["results"],
            row["output"],
            row["structured_output"],
            row["error"],
            row["selection"],
            row["start_time"],
            row["end_time"],
            row["id"],
        ),
    )


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


def get_row(db: Database, coordination_id: str) -> Any:
    return db.query_one("SELECT * FROM coordinations WHERE id=?", (coordination_id,))


def by_request(tx: Tx, request_id: str) -> Any:
    """The id and request hash of the coordination requested with this request id, if any."""
    return tx.execute(
        "SELECT id, request_hash FROM coordinations WHERE request_id = ?", (request_id,)
    ).fetchone()


def probe(db: Database) -> None:
    """Raise unless the coordinations table answers (the engine's health check)."""
    db.query_one("SELECT 1 FROM coordinations LIMIT 1")


def active_rows(db: Database) -> list[Any]:
    return db.query("SELECT * FROM coordinations WHERE status IN ('queued','running') ORDER BY id")


def list_rows(
    db: Database, *, status: str, agent_id: str, correlation_id: str, before: str | None, limit: int
) -> list[Any]:
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if correlation_id:
        where.append("correlation_id = ?")
        params.append(correlation_id)
    if agent_id:
        where.append(
            "(source_agent_id = ? OR EXISTS (SELECT 1 FROM json_each(coordinations.agent_ids) WHERE value = ?))"
        )
        params += [agent_id, agent_id]
    if before:
        where.append("id < ?")
        params.append(before)
    sql = "SELECT * FROM coordinations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    return db.query(sql, (*params, limit))
