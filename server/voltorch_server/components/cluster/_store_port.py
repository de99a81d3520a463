"""What the cluster needs from storage: its members' rows in and out.

Implemented once for SQLite and PostgreSQL by `storage.stores.SqlMembers`; the app builds it and hands it
to `Cluster`. `db` is the shared database (its `try_lock` gives the prune lease)."""

from __future__ import annotations

from typing import Any, Protocol

from ._member import MemberRow


class MembersPort(Protocol):
    db: Any

    def upsert(self, row: MemberRow) -> None: ...
    def all(self) -> list[MemberRow]: ...
    def prune(self, heartbeat_before: float) -> list[str]: ...
    def remove(self, member_id: str) -> None: ...
