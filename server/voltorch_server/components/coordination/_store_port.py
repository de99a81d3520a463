"""What the coordination engine needs from storage (tables agents and coordinations), in its own terms.

Implemented once for SQLite and PostgreSQL by `storage.stores.SqlCoordination`; the app builds it and hands
it to `CoordinationEngine`. Methods taking `tx` run inside the caller's write transaction (`db.write()`);
rows come back as they are stored (`AgentState.from_row` and `_rows.from_row` decode them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._agents import AgentState


class CoordinationPort(Protocol):
    db: Any  # the database the engine writes through (`write()`)

    def agent_rows(self) -> list[Any]: ...
    def agent_row(self, tx: Any, agent_id: str) -> Any:
        """One agent's row, locked to the end of `tx`."""
        ...

    def insert_agent(self, tx: Any, a: AgentState) -> bool:
        """False when the id is taken (registered by another replica meanwhile)."""
        ...

    def update_agent_definition(self, tx: Any, a: AgentState) -> None: ...
    def update_agent_stats(self, tx: Any, a: AgentState) -> None: ...
    def delete_agent(self, tx: Any, agent_id: str) -> None: ...
    def set_session_replica(self, tx: Any, agent_id: str, replica: str, *, was: str | None = None) -> None:
        """Record the replica holding a remote worker's session; with `was`, only while it is that one."""
        ...

    def live_members(self, alive_since: float) -> set[str]:
        """The ids of the cluster's members that heartbeated since `alive_since`."""
        ...

    def insert(self, tx: Any, row: dict[str, Any]) -> None: ...
    def update(self, tx: Any, row: dict[str, Any], owner: str) -> bool:
        """Write the mutable columns of a coordination while `owner` owns it (False: another replica does)."""
        ...

    def row(self, coordination_id: str) -> Any: ...
    def by_request(self, tx: Any, request_id: str) -> Any:
        """The id and request hash of the coordination requested with this request id, if any."""
        ...

    def probe(self) -> None:
        """Raise unless the coordinations table answers (the engine's health check)."""
        ...

    def adopt(
        self,
        tx: Any,
        owner: str,
        *,
        previous: str | None = None,
        execution_id: str = "",
        coordination_id: str = "",
    ) -> list[Any]:
        """Make `owner` the owner of queued and running coordinations (all, `previous`'s, one execution's
        or one) and return their rows."""
        ...

    def hand_over(self, tx: Any, coordination_id: str, owner: str, to: str) -> bool:
        """Make `to` the owner of a coordination `owner` owns (False: `owner` no longer does)."""
        ...

    def owned(self, tx: Any, owner: str, ids: list[str]) -> list[Any]:
        """The queued and running coordinations of `ids` that `owner` owns."""
        ...

    def adopt_orphans(self, tx: Any, owner: str, alive_since: float, limit: int) -> list[Any]:
        """Queued and running coordinations of dead members (of a live execution: only when `owner` owns
        it), now `owner`'s."""
        ...

    def page(
        self, *, status: str, agent_id: str, correlation_id: str, before: str | None, limit: int
    ) -> list[Any]: ...
