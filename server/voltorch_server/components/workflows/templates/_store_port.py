"""What the template store needs from storage: versions in, definitions (JSON text) out.

Implemented once for SQLite and PostgreSQL by `storage.stores.SqlTemplates`; the app builds it and hands
it to the workflow engine. Methods taking `tx` run in the caller's write transaction (`db.write()`)."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ._model import Template


class Latest(NamedTuple):
    """A template's newest stored version."""

    version: int
    digest: str
    definition: str


class TemplatesPort(Protocol):
    db: Any  # the database templates are registered through (`write()`)

    def latest_in(self, tx: Any, name: str) -> Latest | None: ...
    def insert(self, tx: Any, t: Template, *, builtin: bool, digest: str, definition: str) -> bool:
        """False when that version exists (registered by another replica meanwhile)."""
        ...

    def definition(self, name: str, version: int = 0) -> str | None:
        """The stored definition of that version (0: the newest)."""
        ...

    def page(
        self, category: str, all_versions: bool, after_name: str, after_version: int, limit: int
    ) -> list[str]:
        """Definitions after (after_name, after_version), by name and version: every version or only each
        name's newest, of one category or all."""
        ...
