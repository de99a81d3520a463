"""The SQL of versioned workflow templates (table workflow_templates), once for both backends: the
implementation of `components.workflows.templates.TemplatesPort`."""

from __future__ import annotations

from typing import Any

from ...components.workflows.templates import Latest, Template
from .._serial_writes import engine_writes


class SqlTemplates:
    def __init__(self, db: Any):
        self.db = engine_writes(db)  # one engine transaction at a time per process (PostgreSQL)

    def latest_in(self, tx: Any, name: str) -> Latest | None:
        r = tx.execute(
            "SELECT version, digest, definition FROM workflow_templates WHERE name = ? ORDER BY version DESC LIMIT 1",
            (name,),
        ).fetchone()
        return Latest(r["version"], r["digest"], r["definition"]) if r is not None else None

    def insert(self, tx: Any, t: Template, *, builtin: bool, digest: str, definition: str) -> bool:
        """False when that version exists (another replica registered it meanwhile)."""
        return (
            tx.execute(
                "INSERT INTO workflow_templates(name, version, category, builtin, digest, definition, create_time)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (name, version) DO NOTHING",
                (t.name, t.version, t.category, int(builtin), digest, definition, t.create_time),
            ).rowcount
            == 1
        )

    def definition(self, name: str, version: int = 0) -> str | None:
        if version:
            row = self.db.query_one(
                "SELECT definition FROM workflow_templates WHERE name = ? AND version = ?", (name, version)
            )
        else:
            row = self.db.query_one(
                "SELECT definition FROM workflow_templates WHERE name = ? ORDER BY version DESC LIMIT 1",
                (name,),
            )
        return row["definition"] if row is not None else None

    def page(
        self, category: str, all_versions: bool, after_name: str, after_version: int, limit: int
    ) -> list[str]:
        where = ["(name > ? OR (name = ? AND version > ?))"]
        args: list[Any] = [after_name, after_name, after_version]
        if category:
            where.append("category = ?")
            args.append(category)
        if not all_versions:
            where.append("version = (SELECT MAX(version) FROM workflow_templates t2 WHERE t2.name = t.name)")
        rows = self.db.query(
            f"SELECT definition FROM workflow_templates t WHERE {' AND '.join(where)} ORDER BY name, version LIMIT ?",
            (*args, limit),
        )
        return [r["definition"] for r in rows]
