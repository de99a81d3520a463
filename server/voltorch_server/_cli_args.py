"""What every `voltorch` client command shares: the global flags (-o, --target, --token), the help
layout, and the client they configure.

Global flags are accepted before or after the subcommand (`voltorch -o json state get k` and
`voltorch state get k -o json`): the top-level parser holds their defaults; each subcommand repeats them
with SUPPRESS defaults, so a value given after the subcommand overrides and an absent one leaves the
top-level value alone.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from voltorch import DEFAULT_TARGET, Client

from .cli_output import FORMATS

ENVIRONMENT = """\
environment variables:
  VOLTORCH_TARGET       server address for client commands (default 127.0.0.1:50051); a cluster's
                        replicas as a comma-separated list (h1:50051,h2:50051,h3:50051)
  VOLTORCH_TOKEN        bearer token for client commands
  VOLTORCH_<SETTING>    any server setting for `voltorch serve`, upper-cased: VOLTORCH_HOST,
                        VOLTORCH_PORT, VOLTORCH_DB, VOLTORCH_AUTH_TOKENS, VOLTORCH_LOG_LEVEL, ...
                        (see server/voltorch_server/config.py)
  OPENAI_API_KEY        run the built-in agents on an OpenAI-compatible model instead of offline
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout (the environment variable table) as written."""


def target_default() -> str:
    return os.environ.get("VOLTORCH_TARGET") or DEFAULT_TARGET


def global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-o/--output, --target and --token; with top=False their defaults are SUPPRESS (see module doc)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=default(None),
        help="output format: table (for a terminal), json (one document, stable keys) or jsonl (one "
        "object per line) (default: table on a terminal, jsonl when piped; run/watch print progress)",
    )
    parser.add_argument(
        "--target",
        default=default(target_default()),
        help="server address host:port, or a cluster's replicas h1:port,h2:port,... (calls go to the live"
        " ones) (default: $VOLTORCH_TARGET, else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token", default=default(None), help="bearer token (default: $VOLTORCH_TOKEN, else none)"
    )


def command(sub: Any, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand parser that takes the global flags too."""
    p = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter, **kw)
    global_flags(p, top=False)
    return p


def client(args: argparse.Namespace) -> Client:
    """The client the global flags describe (the SDK itself falls back to $VOLTORCH_TOKEN)."""
    return Client(args.target, token=args.token or None)


def target_flags(target: str) -> str:
    """The flags a printed follow-up command needs to reach `target` (" --target X", or "")."""
    return "" if target == target_default() else f" --target {target}"
