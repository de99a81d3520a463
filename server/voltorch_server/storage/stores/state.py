"""The SQL of versioned key/value state (tables kv, kv_history, meta's revision, snapshots), once for both
backends: the implementation of `components.state.StatePort`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...components.state import Change, KeyValue, Row, SnapshotInfo

_KV_COLUMNS = "key, value, version, create_revision, mod_revision, expire_at, update_time"
_KV = f"INSERT INTO kv({_KV_COLUMNS})"
_KV_UPSERT = (
    " ON CONFLICT(key) DO UPDATE SET value=excluded.value, version=excluded.version,"
    " create_revision=excluded.create_revision, mod_revision=excluded.mod_revision,"
    " expire_at=excluded.expire_at, update_time=excluded.update_time"
)
_ROW = f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?"
_HISTORY = (
    "INSERT INTO kv_history(id, revision, key, type, value, version, create_revision, expire_at, update_time,"
    " prev_value, prev_version, prev_mod_revision)"
)
_REVISION = "SELECT value FROM meta WHERE name = 'revision'"
# PostgreSQL: the newest kv_history id and revision, in one statement (one snapshot: they agree).
_HEADS = (
    "SELECT (SELECT value FROM voltorch_counters WHERE name = 'kv_history'),"
    " (SELECT value FROM meta WHERE name = 'revision')"
)
_HISTORY_COUNTER = "kv_history"


def _change(row: Any) -> Change:
    kv = KeyValue(
        key=row["key"],
        value=json.loads(row["value"]) if row["value"] is not None else None,
        version=row["version"],
        create_revision=row["create_revision"],
        mod_revision=row["revision"],
        expire_time=row["expire_at"],
        update_time=row["update_time"],
    )
    prev = None
    if row["prev_version"] is not None:
        prev = KeyValue(
            key=row["key"],
            value=json.loads(row["prev_value"]),
            version=row["prev_version"],
            create_revision=row["create_revision"],
            mod_revision=row["prev_mod_revision"],
            expire_time=None,
            update_time=row["update_time"],
        )
    return Change(id=row["id"], revision=row["revision"], type=row["type"], kv=kv, previous=prev)


def _cached(row: Any) -> tuple[str, Row | None]:
    """A kv_history row as the committed-row cache applies it: the key and its row after the change."""
    key = row["key"]
    if row["type"] != "PUT":
        return key, None
    return key, Row(
        key, row["value"], row["version"], row["create_revision"], row["revision"], row["expire_at"],
        row["update_time"],
    )  # fmt: skip


def _snapshot(r: Any) -> SnapshotInfo:
    return SnapshotInfo(
        r["id"], r["revision"], r["key_count"], r["prefix"], r["description"], r["create_time"]
    )


class SqlState:
    """State's rows. Writes run in the caller's transaction (`tx`); reads on the database's read side."""

    def __init__(self, db: Any):
        self.db = db
        self._revision_locked = _REVISION + db.dialect.lock_row
        self._order = db.dialect.insertion_order

    # -- in a write transaction --------------------------------------------------------------------

    def revision_in(self, tx: Any) -> int:
        """The committed revision; on PostgreSQL its row stays locked until the transaction ends, so
        writers of all replicas take turns and commit in revision order."""
        return tx.execute(self._revision_locked).fetchone()[0]

    def history_head_in(self, tx: Any) -> int:
        """The newest kv_history id (PostgreSQL: its counter row locked until the transaction ends)."""
        return tx.counter(_HISTORY_COUNTER)

    def advance_revision(self, tx: Any, revision: int, expected: int) -> bool:
        """Compare-and-set of the revision: False when it is no longer `expected` (another writer)."""
        cur = tx.execute(
            "UPDATE meta SET value = ? WHERE name = 'revision' AND value = ?", (revision, expected)
        )
        return cur.rowcount == 1

    def row_in(self, tx: Any, key: str) -> Row | None:
        found = tx.execute(_ROW, (key,)).fetchone()
        return Row(*found) if found is not None else None

    def write_rows(self, tx: Any, rows: dict[str, Row | None], history: Sequence[tuple], head: int) -> None:
        """Upsert the rows, delete the keys whose row is None, append the history rows (ids up to `head`)."""
        tx.insert_rows(_KV, [row for row in rows.values() if row is not None], _KV_UPSERT)
        gone = [(key,) for key, row in rows.items() if row is None]
        if gone:
            tx.executemany("DELETE FROM kv WHERE key = ?", gone)
        tx.insert_rows(_HISTORY, history)
        tx.set_counter(_HISTORY_COUNTER, head)

    def snapshot(self, tx: Any, info: SnapshotInfo, now: float) -> int:
        """Store a snapshot of the live keys under info.prefix; returns how many."""
        # The snapshot row first: its items reference it (foreign key).
        tx.execute(
            "INSERT INTO snapshots(id, revision, prefix, description, key_count, create_time) VALUES (?,?,?,?,0,?)",
            (info.id, info.revision, info.prefix, info.description, info.create_time),
        )
        count = tx.execute(
            "INSERT INTO snapshot_items(snapshot_id, key, value, expire_at) SELECT ?, key, value, expire_at"
            " FROM kv WHERE substr(key, 1, ?) = ? AND (expire_at IS NULL OR expire_at > ?)",
            (info.id, len(info.prefix), info.prefix, now),
        ).rowcount
        tx.execute("UPDATE snapshots SET key_count = ? WHERE id = ?", (count, info.id))
        return count

    def snapshot_in(self, tx: Any, snapshot_id: str) -> SnapshotInfo | None:
        r = tx.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return _snapshot(r) if r is not None else None

    def snapshot_items_in(self, tx: Any, snapshot_id: str) -> dict[str, tuple[str, float | None]]:
        """key -> (value as stored, expire_at) of a snapshot's items."""
        rows = tx.execute(
            "SELECT key, value, expire_at FROM snapshot_items WHERE snapshot_id = ?", (snapshot_id,)
        )
        return {r["key"]: (r["value"], r["expire_at"]) for r in rows}

    def keys_in(self, tx: Any, prefix: str) -> list[str]:
        rows = tx.execute("SELECT key FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return [r["key"] for r in rows]

    # -- reads -------------------------------------------------------------------------------------

    def row(self, key: str) -> Row | None:
        found = self.db.query_one(_ROW, (key,))
        return Row(*found) if found is not None else None

    def revision(self) -> int:
        return self.db.query_one(_REVISION)[0]

    def history_head(self) -> int:
        return self.db.sequence_head(_HISTORY_COUNTER)

    def expired_keys(self, now: float, limit: int) -> list[str]:
        rows = self.db.query(
            "SELECT key FROM kv WHERE expire_at IS NOT NULL AND expire_at <= ? LIMIT ?", (now, limit)
        )
        return [r["key"] for r in rows]

    def live_page(self, prefix: str, after: str, now: float, limit: int) -> tuple[list[Row], int]:
        """Live rows under prefix with key > after, by key, and the revision they were read at."""
        with self.db.snapshot() as conn:
            revision = conn.execute(_REVISION).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_KV_COLUMNS} FROM kv WHERE substr(key, 1, ?) = ? AND key > ?"
                " AND (expire_at IS NULL OR expire_at > ?) ORDER BY key LIMIT ?",
                (len(prefix), prefix, after, now, limit),
            ).fetchall()
        return [Row(*r) for r in rows], revision

    def followed_after(self, after_id: int, limit: int) -> tuple[list[Change], list[tuple[str, Row | None]]]:
        """The follower's read (PostgreSQL): changes past after_id, and the same as cache updates."""
        rows = self.db.query("SELECT * FROM kv_history WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [_change(r) for r in rows], [_cached(r) for r in rows]

    def heads(self) -> tuple[int, int]:
        """PostgreSQL: the newest kv_history id and the revision, read together."""
        head, revision = self.db.query(_HEADS)[0]
        return head, revision

    def key_history(self, key: str, before_id: int, limit: int) -> list[Change]:
        """A key's changes with id < before_id, newest first."""
        rows = self.db.query(
            "SELECT * FROM kv_history WHERE key = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (key, before_id, limit),
        )
        return [_change(r) for r in rows]

    def watch_start(self, start_revision: int) -> int:
        """The history position just before the first change at start_revision or later (0 = the head).
        One statement: one consistent read, however writers interleave."""
        return self.db.query_one(
            "SELECT COALESCE((SELECT MIN(id) - 1 FROM kv_history WHERE revision >= ?),"
            " (SELECT COALESCE(MAX(id), 0) FROM kv_history))",
            (start_revision if start_revision > 0 else 1 << 62,),
        )[0]

    def watched_changes(
        self, after_id: int, upto: int, start_revision: int, key: str | None, prefix: str, limit: int
    ) -> list[Change]:
        """Changes past after_id up to id `upto`, at start_revision or later, of `key` (when given) or
        under `prefix`."""
        where, arg = (
            ("key = ?", (key,)) if key is not None else ("substr(key, 1, ?) = ?", (len(prefix), prefix))
        )
        rows = self.db.query(
            f"SELECT * FROM kv_history WHERE id > ? AND id <= ? AND revision >= ? AND {where}"
            " ORDER BY id LIMIT ?",
            (after_id, upto, start_revision, *arg, limit),
        )
        return [_change(r) for r in rows]

    def revision_at(self, history_id: int) -> int:
        """The revision of history entry `history_id` or the next one, else the revision after the newest.
        One statement, so a write committing meanwhile cannot make the answer skip it."""
        return self.db.query_one(
            "SELECT COALESCE((SELECT revision FROM kv_history WHERE id >= ? ORDER BY id LIMIT 1),"
            " (SELECT value FROM meta WHERE name = 'revision') + 1)",
            (history_id,),
        )[0]

    def snapshots(self, before: int, limit: int) -> list[tuple[SnapshotInfo, int]]:
        """Snapshots created before position `before`, newest first, each with its position."""
        # rowid (PostgreSQL: seq) is the creation order, exact even within the same microsecond.
        order = self._order
        rows = self.db.query(
            f"SELECT {order} AS position, * FROM snapshots WHERE {order} < ? ORDER BY {order} DESC LIMIT ?",
            (before, limit),
        )
        return [(_snapshot(r), r["position"]) for r in rows]
