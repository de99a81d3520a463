"""`voltorch state`: get, list, set, delete, watch, history and snapshots of the global key/value state,
scriptable like etcdctl (`get --print-value-only`, `list --keys-only`, `-o json`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import _cli_args
from .cli_output import Lines, Output, shorten


def _value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _when(t: Any) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _kv_table(kv: Any) -> Any:
    def draw(console: Any) -> None:
        console.print(f"{kv.key} = {_value(kv.value)}")
        expires = f", expires {_when(kv.expire_time)}" if kv.expire_time else ""
        console.print(
            f"  version {kv.version}, created at revision {kv.create_revision}, modified at revision "
            f"{kv.mod_revision}{expires}"
        )

    return draw


def _parse_value(parser: argparse.ArgumentParser, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        parser.error(
            f"VALUE is not valid JSON ({exc.msg} at column {exc.colno}); values are JSON — to store the "
            f"text as a string, quote it: voltorch state set KEY '{json.dumps(raw)}'"
        )


def _change_line(c: Any) -> str:
    value = "" if c.type == "delete" else _value(c.kv.value)
    return f"{c.revision:>9} {c.type:<6} {c.key:<32} {c.kv.version:>7} {shorten(value, 80)}"


CHANGE_HEADER = f"{'REVISION':>9} {'TYPE':<6} {'KEY':<32} {'VERSION':>7} VALUE"


def _run(args: argparse.Namespace) -> int:
    out = Output(args.output)
    action = args.state_action
    with _cli_args.client(args) as c:
        if action == "get":
            kv = c.state.get(args.key)
            if args.print_value_only:  # the value alone, as JSON, whatever the format
                out.write(_value(kv.value))
            else:
                out.record(kv, _kv_table(kv))
        elif action == "list":
            items = c.state.list(args.prefix)
            if args.keys_only:
                if args.output in ("json", "jsonl"):  # bare keys unless JSON is asked for explicitly
                    keys = ({"key": kv.key} for kv in items)
                    out.rows(["key"], keys, lambda r: [r["key"]])
                else:
                    for kv in items:
                        out.write(kv.key)
                return 0
            out.rows(
                ["key", "value", "version", "modified at"],
                items,
                lambda kv: [kv.key, shorten(_value(kv.value), 80), str(kv.version), str(kv.mod_revision)],
            )
        elif action == "set":
            value = _parse_value(args.parser, args.value)
            res = c.state.set(args.key, value, expected_version=args.expected_version, ttl=args.ttl)
            out.record(
                res,
                lambda console: console.print(f"{res.kv.key} v{res.kv.version} (revision {res.revision})"),
            )
        elif action == "delete":
            revision = c.state.delete(args.key, expected_version=args.expected_version)
            out.record(
                {"key": args.key, "revision": revision},
                lambda con: con.print(f"deleted {args.key} (revision {revision})"),
            )
        elif action == "history":
            out.rows(
                ["revision", "type", "version", "value"],
                c.state.history(args.key),
                lambda ch: [str(ch.revision), ch.type, str(ch.kv.version), shorten(_value(ch.kv.value), 80)],
                title=f"History of {args.key} (newest first)",
            )
        elif action == "watch":
            if (args.key is None) == (args.prefix is None):
                args.parser.error("watch needs a KEY or --prefix PREFIX (one of them)")
            emit = Lines(out, CHANGE_HEADER, _change_line)
            emit.start()
            try:
                for change in c.state.watch(args.key, prefix=args.prefix, start_revision=args.from_revision):
                    emit(change)
            except KeyboardInterrupt:
                return 0
        elif action == "snapshot":
            return _snapshot(args, c, out)
    return 0


def _snapshot(args: argparse.Namespace, c: Any, out: Output) -> int:
    if args.snapshot_action == "save":
        snap = c.state.snapshot(args.prefix, description=args.description)
        out.record(
            snap,
            lambda con: con.print(
                f"snapshot {snap.id}: {snap.key_count} keys at revision {snap.revision}"
                + (f" under {snap.prefix!r}" if snap.prefix else "")
            ),
        )
    elif args.snapshot_action == "restore":
        res = c.state.restore(args.snapshot_id)
        out.record(
            res,
            lambda con: con.print(
                f"restored {res.keys_restored} keys, deleted {res.keys_deleted} (revision {res.revision})"
            ),
        )
    else:
        out.rows(
            ["id", "revision", "keys", "prefix", "created", "description"],
            c.state.snapshots(),
            lambda s: [
                s.id,
                str(s.revision),
                str(s.key_count),
                s.prefix,
                _when(s.create_time),
                s.description,
            ],
            title="Snapshots",
        )
    return 0


def add_parsers(sub: Any) -> None:
    st = _cli_args.command(sub, "state", "read, write and watch the global key/value state (values are JSON)")
    actions = st.add_subparsers(dest="state_action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = _cli_args.command(actions, name, help)
        p.set_defaults(fn=_run, parser=p)
        return p

    g = action("get", "a key's value, version and revisions")
    g.add_argument("key", help="the key")
    g.add_argument("--print-value-only", action="store_true", help="print only the value, as JSON")

    ls = action("list", "keys under a prefix, in key order")
    ls.add_argument("prefix", nargs="?", default="", help="key prefix (default: every key)")
    ls.add_argument(
        "--keys-only",
        action="store_true",
        help="print only the keys, one per line (as JSON objects with -o json/jsonl)",
    )

    s = action("set", "set a key to a JSON value")
    s.add_argument("key", help="the key")
    s.add_argument("value", help='a JSON value: 42, true, {"a": 1}, or a quoted string \'"text"\'')
    s.add_argument("--ttl", type=float, help="seconds until the key expires (default: never)")
    s.add_argument(
        "--expected-version",
        type=int,
        help="compare-and-set: write only if the key is at this version (0 = does not exist yet)",
    )

    d = action("delete", "delete a key")
    d.add_argument("key", help="the key")
    d.add_argument("--expected-version", type=int, help="delete only if the key is at this version")

    h = action("history", "a key's recorded changes, newest first")
    h.add_argument("key", help="the key")

    w = action("watch", "print changes of a key or a prefix as they happen (Ctrl-C stops)")
    w.add_argument("key", nargs="?", help="the key to watch (or give --prefix)")
    w.add_argument("--prefix", help="watch every key under this prefix")
    w.add_argument(
        "--from-revision",
        type=int,
        default=0,
        help="replay changes from this revision first (default: 0 = only changes from now on)",
    )

    snap = action("snapshot", "save, restore or list snapshots of the state")
    snaps = snap.add_subparsers(dest="snapshot_action", required=True, metavar="ACTION")
    save = _cli_args.command(snaps, "save", "snapshot every key (or those under --prefix)")
    save.add_argument("--prefix", default="", help="only keys under this prefix (default: every key)")
    save.add_argument("--description", default="", help="a note kept with the snapshot")
    restore = _cli_args.command(snaps, "restore", "put the state back as the snapshot holds it")
    restore.add_argument("snapshot_id", help="the snapshot's id (from save or list)")
    _cli_args.command(snaps, "list", "the saved snapshots")
    for p in (save, restore, *[snaps.choices["list"]]):
        p.set_defaults(fn=_run, parser=p)
