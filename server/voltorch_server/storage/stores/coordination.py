"""The SQL of the coordination engine (tables agents and coordinations), once for both backends: the
implementation of `components.coordination.CoordinationPort`. Rows in, rows out: the engine decodes them
(AgentState.from_row, the coordination row decoder), since a live run and a stored one share those types."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .._serial_writes import engine_writes

if TYPE_CHECKING:
    from ...components.coordination import AgentState

# "window" is a reserved word in PostgreSQL (and a keyword in SQLite): quoted, it is a plain column in both.
_AGENT_COLUMNS = (
    'name, kind, capabilities, max_concurrency, llm, labels, tools, register_time, "window", tasks_completed,'
    " tasks_failed, last_error, last_seen"
)
_INSERT_AGENT = (
    f"INSERT INTO agents(id, {_AGENT_COLUMNS}) VALUES ({','.join('?' * 14)}) ON CONFLICT (id) DO NOTHING"
)
INSERT_COLUMNS = (
    "id, request_id, request_hash, mode, status, source_agent_id, target_agent_id, requested_agent_ids,"
    " plan, agent_ids, required_capabilities, task, context, priority, timeout, deadline, condition,"
    " correlation_id, trace_id, traceparent, max_agents, execution_id, step_id, attempts, results, output,"
    " structured_output, error, selection, create_time, start_time, end_time, owner"
)
_COLUMNS = tuple(c.strip() for c in INSERT_COLUMNS.split(","))
_insert_values = itemgetter(*_COLUMNS)  # a row dict's values in the INSERT's order
_INSERT = f"INSERT INTO coordinations({INSERT_COLUMNS}) VALUES ({','.join('?' * len(_COLUMNS))})"
_UPDATE = (
    "UPDATE coordinations SET status=?, agent_ids=?, attempts=?, results=?, output=?, structured_output=?,"
    " error=?, selection=?, start_time=?, end_time=? WHERE id=? AND owner=?"
)
_ACTIVE = "('queued','running')"
_OTHERS_EXECUTION = (  # a live execution owned by another replica than the adopting one (a parameter)
    "EXISTS (SELECT 1 FROM workflow_executions e WHERE e.id = c.execution_id AND e.owner <> ?"
    " AND e.status IN ('pending','queued','running','paused'))"
)


class SqlCoordination:
    def __init__(self, db: Any):
        self.db = engine_writes(db)  # one engine transaction at a time per process (PostgreSQL)
        self.dialect = db.dialect

    # -- agents ------------------------------------------------------------------------------------------

    def agent_rows(self) -> list[Any]:
        return self.db.query("SELECT * FROM agents ORDER BY id")

    def agent_row(self, tx: Any, agent_id: str) -> Any:
        """One agent's row, locked to the end of `tx` (another replica may register the same id)."""
        return tx.execute(f"SELECT * FROM agents WHERE id = ?{self.dialect.lock_row}", (agent_id,)).fetchone()

    def insert_agent(self, tx: Any, a: AgentState) -> bool:
        """False when the id is taken (another replica registered it in the meantime)."""
        cur = tx.execute(_INSERT_AGENT, (a.id, *a.definition_params(), a.register_time, *a.stats_params()))
        return cur.rowcount == 1

    def update_agent_definition(self, tx: Any, a: AgentState) -> None:
        tx.execute(
            "UPDATE agents SET name=?, kind=?, capabilities=?, max_concurrency=?, llm=?, labels=?, tools=?"
            " WHERE id=?",
            (*a.definition_params(), a.id),
        )

    def update_agent_stats(self, tx: Any, a: AgentState) -> None:
        tx.execute(
            'UPDATE agents SET "window"=?, tasks_completed=?, tasks_failed=?, last_error=?, last_seen=?'
            " WHERE id=?",
            (*a.stats_params(), a.id),
        )

    def delete_agent(self, tx: Any, agent_id: str) -> None:
        tx.execute("DELETE FROM agents WHERE id=?", (agent_id,))

    def set_session_replica(self, tx: Any, agent_id: str, replica: str, *, was: str | None = None) -> None:
        """Record the replica holding a remote worker's session ("" = none); with `was`, only while it is
        that replica (a session closing here never clears a newer one on another replica)."""
        if was is None:
            tx.execute("UPDATE agents SET session_replica=? WHERE id=?", (replica, agent_id))
        else:
            tx.execute(
                "UPDATE agents SET session_replica=? WHERE id=? AND session_replica=?",
                (replica, agent_id, was),
            )

    def live_members(self, alive_since: float) -> set[str]:
        """The ids of the members that heartbeated since `alive_since`."""
        rows = self.db.query("SELECT id FROM members WHERE heartbeat_time >= ?", (alive_since,))
        return {r["id"] for r in rows}

    # -- coordinations -----------------------------------------------------------------------------------

    def insert(self, tx: Any, row: dict[str, Any]) -> None:
        tx.execute(_INSERT, _insert_values(row))

    def update(self, tx: Any, row: dict[str, Any], owner: str) -> bool:
        """Write the mutable columns of a coordination while `owner` owns it (False: another replica does)."""
        return (
            tx.execute(
                _UPDATE,
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
                    owner,
                ),
            ).rowcount
            == 1
        )

    def row(self, coordination_id: str) -> Any:
        return self.db.query_one("SELECT * FROM coordinations WHERE id=?", (coordination_id,))

    def by_request(self, tx: Any, request_id: str) -> Any:
        """The id and request hash of the coordination requested with this request id, if any."""
        return tx.execute(
            "SELECT id, request_hash FROM coordinations WHERE request_id = ?", (request_id,)
        ).fetchone()

    def probe(self) -> None:
        """Raise unless the coordinations table answers (the engine's health check)."""
        self.db.query_one("SELECT 1 FROM coordinations LIMIT 1")

    def adopt(
        self,
        tx: Any,
        owner: str,
        *,
        previous: str | None = None,
        execution_id: str = "",
        coordination_id: str = "",
    ) -> list[Any]:
        """Make `owner` the owner of queued and running coordinations, and return them: all of them
        (no filter), those `previous` owned, those of one workflow execution, or one coordination."""
        sql = f"UPDATE coordinations SET owner = ? WHERE status IN {_ACTIVE}"
        args: tuple[Any, ...] = (owner,)
        if previous is not None:
            sql, args = sql + " AND owner = ?", (*args, previous)
        if execution_id:
            sql, args = sql + " AND execution_id = ?", (*args, execution_id)
        if coordination_id:
            sql, args = sql + " AND id = ?", (*args, coordination_id)
        return tx.execute(sql + " RETURNING *", args).fetchall()

    def hand_over(self, tx: Any, coordination_id: str, owner: str, to: str) -> bool:
        """Make `to` the owner of a coordination `owner` owns (False: `owner` no longer does)."""
        return (
            tx.execute(
                "UPDATE coordinations SET owner=? WHERE id=? AND owner=?", (to, coordination_id, owner)
            ).rowcount
            == 1
        )

    def owned(self, tx: Any, owner: str, ids: list[str]) -> list[Any]:
        """The queued and running coordinations of `ids` that `owner` owns (those handed over to it)."""
        if not ids:
            return []
        return tx.execute(
            f"SELECT * FROM coordinations WHERE id IN ({','.join('?' * len(ids))}) AND owner = ?"
            f" AND status IN {_ACTIVE}",
            (*ids, owner),
        ).fetchall()

    def adopt_orphans(self, tx: Any, owner: str, alive_since: float, limit: int) -> list[Any]:
        """Up to `limit` queued or running coordinations whose owner is no live member (no heartbeat since
        `alive_since`), now `owner`'s. Those of a live workflow execution are adopted only by the execution's
        owner: when the dead member owned the execution too, by the replica that takes it over (with it);
        when the coordination had been handed over to a worker's replica that died, by the owner."""
        rows = tx.execute(
            f"SELECT c.id FROM coordinations c WHERE c.status IN {_ACTIVE} AND c.owner NOT IN ('', ?)"
            " AND NOT EXISTS (SELECT 1 FROM members m WHERE m.id = c.owner AND m.heartbeat_time >= ?)"
            f" AND NOT {_OTHERS_EXECUTION} ORDER BY c.id LIMIT ?{self.dialect.skip_locked}",
            (owner, alive_since, owner, limit),
        ).fetchall()
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        return tx.execute(
            f"UPDATE coordinations SET owner = ? WHERE id IN ({','.join('?' * len(ids))}) RETURNING *",
            (owner, *ids),
        ).fetchall()

    def page(
        self, *, status: str, agent_id: str, correlation_id: str, before: str | None, limit: int
    ) -> list[Any]:
        """Coordination rows newest (highest id) first, filtered; `agent_id` matches the source or a participant."""
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if correlation_id:
            where.append("correlation_id = ?")
            params.append(correlation_id)
        if agent_id:
            where.append(f"(source_agent_id = ? OR {self.dialect.json_array_has('coordinations.agent_ids')})")
            params += [agent_id, agent_id]
        if before:
            where.append("id < ?")
            params.append(before)
        sql = "SELECT * FROM coordinations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return self.db.query(sql, (*params, limit))
