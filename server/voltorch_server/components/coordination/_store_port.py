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
    def insert_agent(self, tx: Any, a: AgentState) -> None: ...
    def update_agent_definition(self, tx: Any, a: AgentState) -> None: ...
    def update_agent_stats(self, tx: Any, a: AgentState) -> None: ...
    def delete_agent(self, tx: Any, agent_id: str) -> None: ...

    def insert(self, tx: Any, row: dict[str, Any]) -> None: ...
    def update(self, tx: Any, row: dict[str, Any]) -> None:
        """Write the mutable columns of a coordination."""
        ...

    def row(self, coordination_id: str) -> Any: ...
    def by_request(self, tx: Any, request_id: str) -> Any:
        """The id and request hash of the coordination requested with this request id, if any."""
        ...

    def probe(self) -> None:
        """Raise unless the coordinations table answers (the engine's health check)."""
        ...

    def active_rows(self) -> list[Any]: ...
    def page(
        self, *, status: str, agent_id: str, correlation_id: str, before: str | None, limit: int
    ) -> list[Any]: ...
