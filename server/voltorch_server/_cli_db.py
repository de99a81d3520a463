"""`voltorch db`: commands on the SQLite database file itself, with no server running or needed.

`db check` runs SQLite's full `PRAGMA integrity_check` (every page, index and constraint; the server
runs only the quicker `quick_check` at start). More subcommands (inspection) can be added beside it:
each is one function plus one parser in `add_parsers`.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from . import _cli_args
from . import config as config_mod
from ._cli_output import Output


def _open_read_only(path: str) -> sqlite3.Connection:
    """The file opened read-only: a check must not create a missing file or change an existing one."""
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def integrity_problems(path: str) -> list[str]:
    """Every problem `PRAGMA integrity_check` finds ([] for a sound file)."""
    conn = _open_read_only(path)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:  # damaged beyond what the check can walk (e.g. the header)
        return [str(exc)]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def _check(args: argparse.Namespace) -> int:
    out = Output(args.output)
    path = args.db
    try:
        problems = integrity_problems(path)
    except FileNotFoundError:
        print(f"voltorch: no database file at {path}", file=sys.stderr)
        return 2
    result = {"path": path, "ok": not problems, "problems": problems}

    def draw(console: Any) -> None:
        if not problems:
            console.print(f"database {path}: ok (PRAGMA integrity_check)")
            return
        for p in problems:
            console.print(f"  {p}")

    out.record(result, draw)
    if problems:
        print(
            f"voltorch: database {path} is damaged: {len(problems)} problem(s) found by PRAGMA "
            "integrity_check; restore it from a backup (or .recover it with the sqlite3 shell)",
            file=sys.stderr,
        )
        return 1
    return 0


def add_parsers(sub: Any) -> None:
    db = _cli_args.command(sub, "db", "inspect and check the SQLite database file (no server needed)")
    actions = db.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    default_db = os.environ.get(config_mod.ENV_PREFIX + "DB") or config_mod.Config().db
    check = _cli_args.command(actions, "check", "run PRAGMA integrity_check; exit 1 if the file is damaged")
    check.add_argument(
        "--db", default=default_db, help="the database file (default: $VOLTORCH_DB, else ./voltorch.db)"
    )
    check.set_defaults(fn=_check)
