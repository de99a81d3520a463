"""`voltorch db info`: inspect a database file (tables, row counts, schema version, integrity)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import asdict

from . import _cli_ops
from . import config as config_mod


def _info(args: argparse.Namespace) -> int:
    from .storage.inspect import inspect_database

    path = config_mod.load(args.config, db=args.db).db
    try:
        info = inspect_database(path)
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        print(f"voltorch db info: {path}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**asdict(info), "schema_version": info.schema_version, "ok": info.ok}, indent=2))
        return 0 if info.ok else 1
    out = _cli_ops.console()
    table = _cli_ops.new_table(title=info.path)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in info.tables.items():
        table.add_row(name, f"{rows:,}")
    out.print(table)
    out.print(f"schema version: {info.schema_version or '(empty database)'} ({len(info.applied)} migrations)")
    if info.pending:
        out.print(f"pending (applied when a server opens it): {', '.join(info.pending)}")
    if info.unknown:
        out.print(f"[yellow]made by a newer voltorch: {', '.join(info.unknown)}[/]")
    out.print("integrity: ok" if info.ok else "[red]integrity check failed:[/]\n" + "\n".join(info.integrity))
    return 0 if info.ok else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="inspect a database file")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    info = db_sub.add_parser(
        "info", help="tables, row counts, schema version and integrity check (exit 1 if not sound)"
    )
    info.add_argument("--db", help="SQLite database file (default: as `voltorch serve` would open)")
    info.add_argument("--config", help="TOML or JSON config file")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(fn=_info)
