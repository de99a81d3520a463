"""`voltorch db check` (SQLite's full integrity check) and `voltorch db info` as one command group on the
file, no server needed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cli_process import clean_env, cli


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


def test_the_file_as_a_positional_argument(tmp_path: Path):
    path = tmp_path / "sound.db"
    _database(path)
    check = cli("db", "check", str(path), "-o", "json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout) == {"path": str(path), "ok": True, "problems": []}
    info = cli("db", "info", str(path), "-o", "json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["path"] == str(path)
    both = cli("db", "check", str(path), "--db", str(tmp_path / "other.db"))
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
    assert not (tmp_path / "other.db").exists()


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


def test_info_and_check_open_the_file_serve_would_open(tmp_path: Path):
    """Both take $VOLTORCH_DB like `voltorch serve`; -o json and info's --json print the same document."""
    path = tmp_path / "env.db"
    _database(path)
    env = clean_env(VOLTORCH_DB=str(path))
    check = cli("db", "check", "-o", "json", env=env)
    assert check.returncode == 0 and json.loads(check.stdout)["path"] == str(path)
    info = cli("db", "info", "-o", "json", env=env)
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc == json.loads(cli("db", "info", "--json", env=env).stdout)
    assert doc["path"] == str(path) and doc["ok"] is True and doc["tables"]["filler"] == 2000
    assert doc["integrity"] == ["ok"] and doc["schema_version"]


def test_check_calls_a_file_that_is_not_sqlite_damaged_and_info_refuses_it(tmp_path: Path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all" * 500)
    check = cli("db", "check", "--db", str(path))
    assert check.returncode == 1 and f"database {path} is damaged" in check.stderr
    info = cli("db", "info", "--db", str(path))
    assert info.returncode == 2 and "not a database" in info.stderr and "Traceback" not in info.stderr
