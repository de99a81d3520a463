"""Is the database file sound? SQLite's own checks, as a result a CLI can print and a refusal to start.

`PRAGMA quick_check` reads every page and checks the b-trees' structure (O(file size), no index
cross-checks); `PRAGMA integrity_check` adds those (slower). A file whose pages are damaged opens
without complaint and fails only when a query reaches a damaged page, so the server runs a quick check
at start and refuses a damaged file rather than answering INTERNAL later.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ...errors import DatabaseCorrupt

MAX_PROBLEMS = 100


@dataclass(frozen=True)
class IntegrityResult:
    path: str
    full: bool  # integrity_check (True) or quick_check (False)
    problems: tuple[str, ...]  # what SQLite reported; empty when sound

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_damaged(self) -> None:
        if self.problems:
            raise DatabaseCorrupt(self.path, list(self.problems))


def check_connection(conn: sqlite3.Connection, path: str, *, full: bool = False) -> IntegrityResult:
    """Run quick_check (or integrity_check when full) on an open connection."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        rows = conn.execute(f"PRAGMA {pragma}({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:  # damage that stops the check itself ("disk image is malformed")
        return IntegrityResult(path, full, (str(exc),))
    # One finding per line: SQLite may put several in one row, under a "*** in database main ***" header.
    lines = (line.strip() for r in rows for line in str(r[0]).splitlines())
    problems = tuple(
        line for line in lines if line and line != "ok" and not line.startswith("*** in database")
    )
    return IntegrityResult(path, full, problems)


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing database file (never creates or changes it).
    FileNotFoundError when there is no file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no database file at {file}")
    return sqlite3.connect(f"file:{quote(file.resolve().as_posix())}?mode=ro", uri=True, timeout=30)


def check_file(path: str | Path, *, full: bool = False) -> IntegrityResult:
    """Check a database file without changing it (read-only; safe beside a running server).
    FileNotFoundError when there is no file, sqlite3.Error when it cannot be opened (unreadable); a file
    that is not a database, or whose damage stops the check, is reported as damaged."""
    path = str(path)
    conn = connect_read_only(path)
    try:
        return check_connection(conn, path, full=full)
    finally:
        conn.close()
