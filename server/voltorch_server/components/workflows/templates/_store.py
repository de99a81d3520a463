"""Versioned templates: register (validated, next version, identical = no-op), get, list. The rows are the
store's (`TemplatesPort`, storage/stores/templates.py)."""

from __future__ import annotations

import time

from ....errors import AlreadyExists, InvalidArgument, NotFound
from ...shared import decode_token, encode_token, fitting, is_pair, page_size, wire_bytes
from ._check import validate_template
from ._model import Template, dumps, loads, with_version
from ._store_port import TemplatesPort


class TemplateStore:
    def __init__(self, rows: TemplatesPort):
        self.rows = rows
        self.db = rows.db
        self.reserved: set[str] = set()  # names of built-in templates

    def register(self, t: Template, *, builtin: bool = False) -> Template:
        validate_template(t)
        if t.name in self.reserved and not builtin:
            raise InvalidArgument(
                "template.name",
                f"{t.name!r} is a built-in template and cannot be replaced",
                reason="TEMPLATE_INVALID",
            )
        digest = t.definition_digest()
        while True:  # again when another replica sharing the database took that version meanwhile
            stored = self._register(t, digest, builtin)
            if stored is not None:
                return stored

    def _register(self, t: Template, digest: str, builtin: bool) -> Template | None:
        with self.db.write() as tx:
            latest = self.rows.latest_in(tx, t.name)
            latest_version = latest.version if latest else 0
            if latest and latest.digest == digest and t.version in (0, latest_version, latest_version + 1):
                return loads(latest.definition)
            if t.version and t.version != latest_version + 1:
                raise AlreadyExists(
                    f"template {t.name!r} is at version {latest_version}; the next version is"
                    f" {latest_version + 1} (or pass version 0)",
                    reason="TEMPLATE_VERSION_EXISTS",
                    metadata={"name": t.name, "latest_version": str(latest_version)},
                )
            stored = with_version(t, latest_version + 1, time.time(), builtin)
            if not self.rows.insert(tx, stored, builtin=builtin, digest=digest, definition=dumps(stored)):
                return None
        return stored

    def get(self, name: str, version: int = 0, *, field: str = "name") -> Template:
        return self.get_raw(name, version, field=field)[0]

    def get_raw(self, name: str, version: int = 0, *, field: str = "name") -> tuple[Template, str]:
        """The template and its stored JSON definition."""
        if not name:
            raise InvalidArgument(field, "a template name is required", reason="FIELD_REQUIRED")
        if version < 0:
            raise InvalidArgument("version", "must not be negative")
        raw = self.rows.definition(name, version)
        if raw is None:
            what = f"{name!r} version {version}" if version else repr(name)
            raise NotFound("template", f"{name}@{version}" if version else name, f"template {what} not found")
        return loads(raw), raw

    def list(
        self, category: str = "", all_versions: bool = False, page_size_: int = 0, page_token: str = ""
    ) -> tuple[list[Template], str]:
        size = page_size(page_size_)
        query = {"c": category, "all": all_versions}
        pos = decode_token(page_token, query, shape=is_pair)
        name, version = pos if pos else ("", 0)
        rows = self.rows.page(category, all_versions, name, version, size + 1)
        out = [loads(raw) for raw in rows[: fitting(wire_bytes(raw) for raw in rows[:size])]]
        token = encode_token(query, [out[-1].name, out[-1].version]) if len(rows) > len(out) else ""
        return out, token
