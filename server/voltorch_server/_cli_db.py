"""`voltorch db`: commands on the SQLite database file itself, read-only, with no server running or needed.

`db info` shows what the file holds (tables and row counts, schema version, integrity); `db check` runs
only SQLite's full `PRAGMA integrity_check` (every page, index and constraint; the server runs only the
quicker `quick_check` at start), for scripts and after a crash. Both read the file read-only, through
`storage.inspect` and `storage.check_file` (the server's own check at start).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import asdict
from typing import Any

from . import _cli_args
from . import config as config_mod
from .cli_output import Output, new_table
from .errors import StartupError


def _path(args: argparse.Namespace) -> str:
    """FILE or --db (one of them), else the file `voltorch serve` would open with the same --config (and
    VOLTORCH_DB)."""
    if args.file and args.db and args.file != args.db:
        args.parser.error(f"give the database once: FILE {args.file!r} or --db {args.db!r}, not both")
    try:
        return config_mod.load(args.config, db=args.file or args.db).db
    except (OSError, ValueError) as exc:
        raise StartupError(f"bad configuration: {exc}") from None


def _info(args: argparse.Namespace) -> int:
    from .storage.sqlite.inspect import inspect_database

    path = _path(args)
    try:
        info = inspect_database(path)
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        print(f"voltorch db info: {path}: {exc}", file=sys.stderr)
        return 2
    out = Output("json" if args.json else args.output, default="table")

    def draw(console: Any) -> None:
        table = new_table(title=info.path)
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, rows in info.tables.items():
            table.add_row(name, f"{rows:,}")
        console.print(table)
        console.print(
            f"schema version: {info.schema_version or '(empty database)'} ({len(info.applied)} migrations)"
        )
        if info.pending:
            console.print(f"pending (applied when a server opens it): {', '.join(info.pending)}")
        if info.unknown:
            console.print(f"[yellow]made by a newer voltorch: {', '.join(info.unknown)}[/]")
        console.print(
            "integrity: ok" if info.ok else "[red]integrity check failed:[/]\n" + "\n".join(info.integrity)
        )

    out.record({**asdict(info), "schema_version": info.schema_version, "ok": info.ok}, draw)
    return 0 if info.ok else 1


def _check(args: argparse.Namespace) -> int:
    from .storage import check_file

    out = Output(args.output)
    path = _path(args)
    try:
        problems = list(check_file(path, full=True).problems)
    except FileNotFoundError:
        print(f"voltorch: no database file at {path}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # cannot be opened at all (unreadable)
        print(f"voltorch: cannot open database {path}: {exc}", file=sys.stderr)
        return 2

    def draw(console: Any) -> None:
        if not problems:
            console.print(f"database {path}: ok (PRAGMA integrity_check)")
            return
        for p in problems:
            console.print(f"  {p}")

    out.record({"path": path, "ok": not problems, "problems": problems}, draw)
    if problems:
        print(
            f"voltorch: database {path} is damaged: {len(problems)} problem(s) found by PRAGMA "
            "integrity_check; restore it from a backup (or .recover it with the sqlite3 shell)",
            file=sys.stderr,
        )
        return 1
    return 0


def _file_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="the database file (the same as --db; default: see --db)"
    )
    parser.add_argument(
        "--db",
        help="the database file (default: as `voltorch serve` would open it: $VOLTORCH_DB, else ./voltorch.db)",
    )
    parser.add_argument("--config", help="TOML or JSON config file whose db setting to use (default: none)")


def add_parsers(sub: Any) -> None:
    db = _cli_args.command(
        sub, "db", "inspect and check the SQLite database file (read-only, no server needed)"
    )
    actions = db.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    info = _cli_args.command(
        actions, "info", "tables, row counts, schema version and integrity check; exit 1 if not sound"
    )
    _file_flags(info)
    info.add_argument("--json", action="store_true", help="print JSON (the same as -o json)")
    info.set_defaults(fn=_info, parser=info)
    check = _cli_args.command(actions, "check", "run PRAGMA integrity_check; exit 1 if the file is damaged")
    _file_flags(check)
    check.set_defaults(fn=_check, parser=check)
