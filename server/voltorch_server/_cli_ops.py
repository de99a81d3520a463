"""The operator commands of the `voltorch` CLI: events (list / --follow), agents, health, metrics, errors."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

DEFAULT_TARGET = os.environ.get("VOLTORCH_TARGET", "127.0.0.1:50051")


# rich is imported when a command prints, so `voltorch serve` parses its arguments without the cli extra.
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)


def new_table(**kwargs: Any) -> Table:
    from rich.table import Table

    return Table(**kwargs)


def client(args: argparse.Namespace) -> Any:
    from voltorch import Client

    return Client(args.target, token=getattr(args, "token", None) or os.environ.get("VOLTORCH_TOKEN") or None)


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", default=DEFAULT_TARGET, help="server address host:port ($VOLTORCH_TARGET)"
    )
    parser.add_argument("--token", help="bearer token ($VOLTORCH_TOKEN)")


def _time(t: Any) -> str:
    return t.strftime("%H:%M:%S.%f")[:-3] if t else ""


def _event_line(e: Any) -> str:
    data = json.dumps(e.data, default=str)
    if len(data) > 160:
        data = data[:157] + "..."
    corr = f" corr={e.correlation_id}" if e.correlation_id else ""
    return f"{e.sequence:>8} {_time(e.time)} {e.type:<32} {e.source:<14}{corr} {data}"


def _events(args: argparse.Namespace) -> int:
    filters = dict(types=args.type or (), source=args.source or "", correlation_id=args.correlation or "")
    with client(args) as c:
        if args.follow:
            start = args.from_sequence if args.from_sequence is not None else None
            try:
                for e in c.events.subscribe(**filters, from_sequence=start):
                    print(_event_line(e), flush=True)
            except KeyboardInterrupt:
                return 0
            return 0
        listing = c.events.list(
            **filters, descending=not args.oldest_first, start_sequence=args.from_sequence or 0
        )
        for e in itertools.islice(listing, args.limit):
            print(_event_line(e))
    return 0


def _agents(args: argparse.Namespace) -> int:
    with client(args) as c:
        table = new_table(title="agents")
        for col in ("id", "kind", "status", "capabilities", "load", "success", "latency", "done", "failed"):
            table.add_column(col)
        for a in c.coordination.list_agents():
            table.add_row(
                a.id,
                a.kind,
                a.status,
                ", ".join(a.capabilities),
                f"{a.current_load}/{a.max_concurrency}",
                f"{a.success_rate:.0%}",
                f"{a.avg_latency * 1000:.0f} ms",
                str(a.tasks_completed),
                str(a.tasks_failed),
            )
        console().print(table)
    return 0


def _health(args: argparse.Namespace) -> int:
    with client(args) as c:
        h = c.health(refresh=True)
        out = console()
        out.print(
            f"[bold]{h.status}[/]  uptime {h.uptime:.0f}s  version {h.version}  workflows active {h.active_workflows}"
            f" queued {h.queued_workflows}  agents {h.registered_agents}  workers {h.connected_workers}"
            f"  errors {h.error_count}"
        )
        table = new_table()
        for col in ("component", "status", "restarts", "errors", "message"):
            table.add_column(col)
        for comp in h.components:
            table.add_row(
                comp.name, comp.status, str(comp.restart_count), str(comp.error_count), comp.message
            )
        out.print(table)
        if h.last_error:
            out.print(
                f"last error: {h.last_error.component} {h.last_error.code}: {h.last_error.message}"
                f" (trace {h.last_error.trace_id or '-'})"
            )
        return 0 if h.status == "HEALTHY" else 1


def _metrics(args: argparse.Namespace) -> int:
    with client(args) as c:
        m = c.metrics(args.names or ())
        table = new_table(title="metrics")
        for col in ("name", "attributes", "value", "unit"):
            table.add_column(col)
        for x in m.metrics:
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(x.attributes.items()))
            value = f"{x.value:g}"
            if x.histogram and x.histogram.count:
                value += f" (avg {x.histogram.sum / x.histogram.count:.4g})"
            table.add_row(x.name, attrs, value, x.unit)
        console().print(table)
    return 0


def _errors(args: argparse.Namespace) -> int:
    with client(args) as c:
        if args.trace or args.correlation:
            t = c.trace(args.trace, correlation_id=None if args.trace else args.correlation)
            for entry in t.entries:  # events and errors in causal order: one story
                if hasattr(entry, "sequence"):
                    print(_event_line(entry))
                else:
                    print(f"   ERROR {_time(entry.time)} {entry.component} {entry.code}: {entry.message}")
            return 0
        for err in c.errors():
            print(
                f"{_time(err.time)} {err.component:<12} {err.code:<24} {err.message} (trace {err.trace_id or '-'})"
            )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("events", help="list events, or follow them live with --follow")
    ev.add_argument(
        "--follow", "-f", action="store_true", help="replay from --from-sequence, then follow live"
    )
    ev.add_argument("--type", action="append", help="type glob, e.g. 'workflow.*' (repeatable)")
    ev.add_argument("--source")
    ev.add_argument("--correlation", help="correlation id (e.g. a workflow execution id)")
    ev.add_argument("--from-sequence", type=int)
    ev.add_argument("--limit", type=int, default=50)
    ev.add_argument("--oldest-first", action="store_true")
    ev.set_defaults(fn=_events)

    ag = sub.add_parser("agents", help="registered agents with their load and success rates")
    ag.set_defaults(fn=_agents)

    he = sub.add_parser("health", help="overall and per-component health (exit 1 unless HEALTHY)")
    he.set_defaults(fn=_health)

    me = sub.add_parser("metrics", help="current metric values")
    me.add_argument("names", nargs="*", help="metric names or globs, e.g. 'voltorch.workflows.*'")
    me.set_defaults(fn=_metrics)

    er = sub.add_parser("errors", help="recorded errors, or one story by --trace / --correlation")
    er.add_argument("--trace")
    er.add_argument("--correlation")
    er.set_defaults(fn=_errors)

    for p in (ev, ag, he, me, er):
        add_target(p)
