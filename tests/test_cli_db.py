"""`voltorch db check`: SQLite's full integrity check on the file, no server needed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cli_process import cli


def _database(path: Path) -> None:
    """A real voltorch database with enough rows to span many pages."""
    from voltorch_server.storage import Database, migrate

    db = Database(path)
    migrate(db)
    db.close()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("CREATE INDEX filler_body ON filler (body)")
        conn.executemany(
            "INSERT INTO filler (body) VALUES (?)", [(f"row {i} " + "x" * 300,) for i in range(2000)]
        )
    conn.close()


def test_a_sound_database_checks_ok(tmp_path: Path):
    path = tmp_path / "sound.db"
    _database(path)
    result = cli("db", "check", "--db", str(path), "-o", "table")
    assert result.returncode == 0, result.stderr
    assert f"database {path}: ok" in result.stdout
    doc = json.loads(cli("db", "check", "--db", str(path), "-o", "json").stdout)
    assert doc == {"path": str(path), "ok": True, "problems": []}


def test_damaged_middle_pages_are_reported(tmp_path: Path):
    path = tmp_path / "damaged.db"
    _database(path)
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page) // 2
    for n in range(middle, middle + 4):
        data[n * page + 100 : n * page + 1000] = b"\xff" * 900  # not the header: the file still opens
    path.write_bytes(bytes(data))
    result = cli("db", "check", "--db", str(path))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"database {path} is damaged" in result.stderr
    assert json.loads(result.stdout)["ok"] is False


def test_a_missing_file_is_named_and_not_created(tmp_path: Path):
    path = tmp_path / "nope.db"
    result = cli("db", "check", "--db", str(path))
    assert result.returncode == 2 and f"no database file at {path}" in result.stderr
    assert not path.exists()
