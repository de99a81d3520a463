"""The `voltorch` command: serve, and client commands against a running server."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from . import _cli_db, _cli_ops, _cli_schedules, _cli_workflows
from . import config as config_mod

# What to install when a command's third-party imports are missing (`pip install voltorch` is the SDK only).
_EXTRA_OF = {"serve": "server", "db": "server"}


def _serve(args: argparse.Namespace) -> int:
    from . import logs
    from .app import VoltorchServer

    try:
        cfg = config_mod.load(args.config, host=args.host, port=args.port, db=args.db, ui_port=args.ui_port)
    except (OSError, ValueError) as exc:
        print(f"voltorch: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        logs.configure(cfg.log_level, cfg.log_format, cfg.log_file, cfg.log_destination)
    except (OSError, ValueError) as exc:
        print(f"voltorch: bad logging configuration: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        done.set()

    # Handlers before the banner, so a signal sent as soon as the port is known stops us cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server = VoltorchServer(cfg).start()
    except RuntimeError as exc:  # a port that cannot be bound
        print(f"voltorch: {exc}", file=sys.stderr)
        return 2
    print(f"voltorch listening on {server.target} (db {cfg.db})", flush=True)
    if server.console is not None:
        print(f"voltorch console on {server.console.url}", flush=True)
    # A timed wait: a signal delivered to one of grpc's threads does not interrupt an untimed wait in
    # the main thread, and Python runs signal handlers only in the main thread.
    while not done.wait(0.5):
        pass
    print("voltorch: shutting down", flush=True)
    server.stop()
    return 0


def _print(obj: Any) -> None:
    from dataclasses import asdict, is_dataclass

    print(json.dumps(asdict(obj) if is_dataclass(obj) else obj, indent=2, default=str))


def _state(args: argparse.Namespace) -> int:
    with _cli_ops.client(args) as c:
        if args.action == "get":
            _print(c.state.get(args.key))
        elif args.action == "set":
            try:
                value = json.loads(args.value)
            except json.JSONDecodeError:
                value = args.value
            _print(c.state.set(args.key, value))
        elif args.action == "delete":
            _print({"revision": c.state.delete(args.key)})
        elif args.action == "list":
            for kv in c.state.list(args.key or ""):
                print(f"{kv.key} = {json.dumps(kv.value)}  (v{kv.version})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voltorch", description="voltorch: an orchestration server for AI agents"
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--db", help="SQLite database file")
    s.add_argument("--config", help="TOML or JSON config file")
    s.add_argument(
        "--ui-port", type=int, help="serve the web console on this port (0 = off, -1 = any free port)"
    )
    s.set_defaults(fn=_serve)

    st = sub.add_parser("state", help="read and write global state")
    st.add_argument("action", choices=["get", "set", "delete", "list"])
    st.add_argument("key", nargs="?")
    st.add_argument("value", nargs="?")
    st.set_defaults(fn=_state)

    _cli_ops.add_target(st)
    _cli_workflows.add_parsers(sub)
    _cli_schedules.add_parsers(sub)
    _cli_ops.add_parsers(sub)
    _cli_db.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from voltorch.errors import VoltorchError

    try:
        return args.fn(args)
    except VoltorchError as exc:
        print(f"voltorch: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in ("voltorch", "voltorch_server"):
            raise  # our own code is broken: not a missing extra
        extra = _EXTRA_OF.get(args.command, "cli")
        print(
            f"voltorch {args.command}: the Python package providing {exc.name!r} is not installed;"
            f" this command needs `pip install 'voltorch[{extra}]'`",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
