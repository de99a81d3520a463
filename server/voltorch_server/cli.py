"""The `voltorch` command: serve, and client commands against a running server.

Errors a user can fix are one line on stderr, never a traceback: a start-up or configuration problem
exits 2 (like a usage error), an error answered by the server exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from . import _cli_args, _cli_db, _cli_ops, _cli_schedules, _cli_state, _cli_workflows, cpus
from . import config as config_mod
from .errors import StartupError

DEFAULTS = config_mod.Config()


def port_number(text: str) -> int:
    """--port: an integer in 0-65535 (70000 must not wrap around to 4464)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {port}")
    return port


# What to install when a command's third-party imports are missing (`pip install voltorch` is the SDK only).
_EXTRA_OF = {"serve": "server", "db": "server"}


def _serve(args: argparse.Namespace) -> int:
    from . import heap, logs

    try:
        cfg = config_mod.load(
            args.config,
            host=args.host,
            port=args.port,
            db=args.db,
            local_db=args.local_db,
            replica_id=args.replica_id,
            ui_port=args.ui_port,
        )
    except (OSError, ValueError) as exc:
        raise StartupError(f"bad configuration: {exc}") from None
    try:
        logs.configure(cfg.log_level, cfg.log_format, cfg.log_file, cfg.log_destination)
    except (OSError, ValueError) as exc:
        raise StartupError(f"bad logging configuration: {exc}") from None
    try:  # before the server's threads start: they inherit where this one runs
        where = cpus.apply(cfg.cpu_affinity, cfg.cpu_affinity_recheck)
    except (OSError, ValueError) as exc:
        raise StartupError(f"bad configuration: {exc}") from None
    # The server's modules only now: a configuration error is reported without their ~1 s of imports.
    from .app import VoltorchServer
    from .storage import shown

    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        done.set()

    # Handlers before the banner, so a signal sent as soon as the port is known stops us cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = VoltorchServer(cfg).start()  # StartupError: a port, a database or a setting it cannot use
    heap.settle()  # start-up's objects out of full collections (their pauses were the latency's tail)
    logging.getLogger("voltorch").info("serving %s", where)
    print(f"voltorch listening on {server.target} (db {shown(cfg.db)})", flush=True)
    if server.console is not None:
        print(f"voltorch console on {server.console.url}", flush=True)
    # A timed wait: a signal delivered to one of grpc's threads does not interrupt an untimed wait in
    # the main thread, and Python runs signal handlers only in the main thread.
    while not done.wait(0.5):
        pass
    print("voltorch: shutting down", flush=True)
    server.stop()
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voltorch")
    except PackageNotFoundError:
        import voltorch

        return voltorch.__version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voltorch",
        description="voltorch: an orchestration server for AI agents. Global flags (-o, --target, --token) "
        "go before or after the command.",
        epilog=_cli_args.ENVIRONMENT,
        formatter_class=_cli_args.HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"voltorch {_version()}")
    _cli_args.global_flags(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Settings: defaults < --config file < VOLTORCH_* variables < flags.",
        epilog=_cli_args.ENVIRONMENT,
        formatter_class=_cli_args.HelpFormatter,
    )
    s.add_argument("--host", help=f"address to listen on (default: $VOLTORCH_HOST, else {DEFAULTS.host})")
    s.add_argument(
        "--port",
        type=port_number,
        help=f"port to listen on, 0 = any free port (default: $VOLTORCH_PORT, else {DEFAULTS.port})",
    )
    s.add_argument(
        "--db",
        help="SQLite database file, created if missing, or a postgresql:// DSN shared by several replicas"
        f" (default: $VOLTORCH_DB, else {DEFAULTS.db})",
    )
    s.add_argument(
        "--local-db",
        help="with a PostgreSQL --db: this replica's own SQLite file, for its error log and metric history"
        " (default: $VOLTORCH_LOCAL_DB, else"
        " ./voltorch-replica-<port>.db)",
    )
    s.add_argument(
        "--replica-id",
        help="this replica's id among the cluster's members (default: $VOLTORCH_REPLICA_ID, else the host"
        " name and a random suffix, new at each start)",
    )
    s.add_argument("--config", help="TOML (.toml) or JSON config file (default: none)")
    s.add_argument(
        "--ui-port",
        type=int,
        help="serve the web console on this port, 0 = off, -1 = any free port "
        f"(default: $VOLTORCH_UI_PORT, else {DEFAULTS.ui_port})",
    )
    s.set_defaults(fn=_serve)

    _cli_state.add_parsers(sub)
    _cli_workflows.add_parsers(sub)
    _cli_schedules.add_parsers(sub)
    _cli_ops.add_parsers(sub)
    _cli_db.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from voltorch.errors import VoltorchError

    try:
        code = args.fn(args)
        sys.stdout.flush()
        return code
    except StartupError as exc:
        print(f"voltorch: {exc}", file=sys.stderr)
        return 2
    except VoltorchError as exc:
        print(f"voltorch: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`voltorch events | head`): nothing more to say. Point stdout at /dev/null
        # so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
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
