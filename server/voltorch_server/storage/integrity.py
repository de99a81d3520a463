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

MAX_PROBLEMS = 100


class DatabaseCorrupt(Exception):
    """The database file is damaged. The message is one line naming the file and what SQLite found."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = list(problems)
        first = problems[0] if problems else "unknown damage"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            f"database {path} is damaged: {first}{more}; restore it from a backup, or run "
            f"`voltorch db check` for a full report"
        )


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
    problems = tuple(str(r[0]) for r in rows if str(r[0]) != "ok")
    return IntegrityResult(path, full, problems)


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing database file (never creates or changes it).
    FileNotFoundError when there is no file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no database file at {file}")
    return sqlite3.connect(f"file:{quote(file.resolve().as_posix())}?mode=ro", uri=True, timeout=30)


def check_file(path: str | Path, *, full: bool = False) -> IntegrityResult:
    """Check a database file without changing it (read-only; safe beside a running server)."""
    path = str(path)
    try:
        conn = connect_read_only(path)
    except (FileNotFoundError, sqlite3.Error) as exc:
        return IntegrityResult(path, full, (str(exc),))
    try:
        return check_connection(conn, path, full=full)
    finally:
        conn.close()
