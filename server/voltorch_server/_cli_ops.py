"""The operator commands of the `voltorch` CLI: events (list / --follow), agents, health, metrics, errors."""

from __future__ import annotations

import argparse
import itertools
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from voltorch import EventHeartbeat

from . import _cli_args
from .cli_output import Lines, Output, new_table, shorten

if TYPE_CHECKING:
    from rich.console import Console

# The watcher's periodic bookkeeping: every few seconds, for ever. Shown with --all (or asked by --type).
PERIODIC = frozenset({"component.health.checked", "system.metrics.collected"})
HEARTBEAT_SECONDS = 5.0


def _time(t: Any) -> str:
    return t.astimezone().strftime("%H:%M:%S.%f")[:-3] if t else ""


EVENT_HEADER = f"{'SEQUENCE':>8} {'TIME':<12} {'TYPE':<32} {'SOURCE':<14} DATA"


def _event_line(e: Any) -> str:
    corr = f"corr={e.correlation_id} " if e.correlation_id else ""
    data = shorten(json.dumps(e.data, default=str, ensure_ascii=False), 160)
    return f"{e.sequence:>8} {_time(e.time):<12} {e.type:<32} {e.source:<14} {corr}{data}"


def _shown(args: argparse.Namespace, event: Any) -> bool:
    """Hide the watcher's periodic events unless --all, or asked for by --type."""
    return bool(args.all or args.type) or event.type not in PERIODIC


def _follow(args: argparse.Namespace, c: Any, out: Output, filters: dict[str, Any]) -> int:
    """Replay from --from-sequence, then follow live. The subscription outlives server restarts (it
    resumes exactly after the last event); say when the server goes away and where it resumed."""

    def status(what: str, sequence: int | None) -> None:
        out.message("reconnecting…" if what == "reconnecting" else f"resumed at {sequence}")

    emit = Lines(out, EVENT_HEADER, _event_line)
    sub = c.events.subscribe(
        **filters,
        from_sequence=args.from_sequence,
        heartbeats=True,  # a new stream answers at once, so "resumed" is said when it is
        heartbeat_interval=HEARTBEAT_SECONDS,
        reconnect_timeout=None,  # a follower waits for the server as long as it takes
        on_status=status,
    )
    with sub:
        emit.start()
        for item in sub:
            if not isinstance(item, EventHeartbeat) and _shown(args, item):
                emit(item)
    return 0


def _events(args: argparse.Namespace) -> int:
    out = Output(args.output)
    filters: dict[str, Any] = dict(
        types=args.type or (), source=args.source or "", correlation_id=args.correlation or ""
    )
    with _cli_args.client(args) as c:
        if args.follow:
            try:
                return _follow(args, c, out, filters)
            except KeyboardInterrupt:
                return 0
        listing = c.events.list(
            **filters, descending=not args.oldest_first, start_sequence=args.from_sequence or 0
        )
        events = itertools.islice((e for e in listing if _shown(args, e)), args.limit)
        if out.format == "json":
            out.rows([], events, lambda e: [])
        else:
            emit = Lines(out, EVENT_HEADER, _event_line)
            for e in events:
                emit(e)
    return 0


def _agents(args: argparse.Namespace) -> int:
    out = Output(args.output)
    with _cli_args.client(args) as c:
        out.rows(
            ("id", "kind", "status", "capabilities", "load", "success", "latency", "done", "failed"),
            c.coordination.list_agents(),
            lambda a: [
                a.id,
                a.kind,
                a.status,
                ", ".join(a.capabilities),
                f"{a.current_load}/{a.max_concurrency}",
                f"{a.success_rate:.0%}",
                f"{a.avg_latency * 1000:.0f} ms",
                str(a.tasks_completed),
                str(a.tasks_failed),
            ],
            title="agents",
        )
    return 0


def _health(args: argparse.Namespace) -> int:
    out = Output(args.output)
    with _cli_args.client(args) as c:
        h = c.health(refresh=True)

        def draw(console: Console) -> None:
            console.print(
                f"[bold]{h.status}[/]  uptime {h.uptime:.0f}s  version {h.version}  workflows active "
                f"{h.active_workflows} queued {h.queued_workflows}  agents {h.registered_agents}  workers "
                f"{h.connected_workers}  errors {h.error_count}"
            )
            table = new_table()
            for col in ("component", "status", "restarts", "errors", "message"):
                table.add_column(col)
            for comp in h.components:
                table.add_row(
                    comp.name, comp.status, str(comp.restart_count), str(comp.error_count), comp.message
                )
            console.print(table)
            if h.last_error:
                console.print(
                    f"last error: {h.last_error.component} {h.last_error.code}: {h.last_error.message}"
                    f" (trace {h.last_error.trace_id or '-'})"
                )

        out.record(h, draw)
        return 0 if h.status == "HEALTHY" else 1


def _ago(t: Any) -> str:
    if t is None:
        return "-"
    return f"{max(0.0, datetime.now(UTC).timestamp() - t.timestamp()):.1f}s ago"


def _cluster(args: argparse.Namespace) -> int:
    out = Output(args.output)
    with _cli_args.client(args) as c:
        out.rows(
            ("id", "address", "state", "version", "started", "heartbeat", "executions", "workers"),
            c.health().members,
            lambda m: [
                f"{m.id} *" if m.local else m.id,
                m.address,
                "alive" if m.alive else "DEAD",
                m.version,
                _time(m.start_time),
                _ago(m.last_heartbeat),
                str(m.running_executions),
                str(m.connected_workers),
            ],
            title="cluster members (* = the replica that answered)",
        )
    return 0


def _metrics(args: argparse.Namespace) -> int:
    out = Output(args.output)

    def cells(x: Any) -> list[str]:
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(x.attributes.items()))
        value = f"{x.value:g}"
        if x.histogram and x.histogram.count:
            value += f" (avg {x.histogram.sum / x.histogram.count:.4g})"
        return [x.name, attrs, value, x.unit]

    with _cli_args.client(args) as c:
        out.rows(
            ("name", "attributes", "value", "unit"),
            c.metrics(args.names or ()).metrics,
            cells,
            title="metrics",
        )
    return 0


def _errors(args: argparse.Namespace) -> int:
    out = Output(args.output)
    with _cli_args.client(args) as c:
        if args.trace or args.correlation:
            t = c.trace(args.trace, correlation_id=None if args.trace else args.correlation)
            if out.json:
                out.record(t, lambda _console: None)
                return 0
            for entry in t.entries:  # events and errors in causal order: one story
                if hasattr(entry, "sequence"):
                    out.write(_event_line(entry))
                else:
                    out.write(f"   ERROR {_time(entry.time)} {entry.component} {entry.code}: {entry.message}")
            return 0
        out.rows(
            ("time", "component", "code", "message", "trace"),
            c.errors(),
            lambda e: [_time(e.time), e.component, e.code, e.message, e.trace_id or "-"],
            title="errors",
        )
    return 0


def add_parsers(sub: Any) -> None:
    ev = _cli_args.command(sub, "events", "list events (newest first), or follow them live with --follow")
    ev.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="replay from --from-sequence, then follow live (Ctrl-C stops)",
    )
    ev.add_argument("--type", action="append", help="type glob, e.g. 'workflow.*' (repeatable; default: all)")
    ev.add_argument("--source", help="only events from this source (default: any)")
    ev.add_argument(
        "--correlation", help="only this correlation id, e.g. a workflow execution id (default: any)"
    )
    ev.add_argument(
        "--from-sequence",
        type=int,
        help="start at this sequence (default: the newest; with --follow, from now)",
    )
    ev.add_argument("--limit", type=int, default=50, help="list at most this many events (default: 50)")
    ev.add_argument("--oldest-first", action="store_true", help="list oldest first (default: newest first)")
    ev.add_argument(
        "--all",
        action="store_true",
        help="also show the watcher's periodic component.health.checked and system.metrics.collected",
    )
    ev.set_defaults(fn=_events)

    _cli_args.command(sub, "agents", "registered agents with their load and success rates").set_defaults(
        fn=_agents
    )
    _cli_args.command(sub, "health", "overall and per-component health (exit 1 unless HEALTHY)").set_defaults(
        fn=_health
    )
    _cli_args.command(
        sub, "cluster", "the cluster's members: address, alive or dead, what each runs"
    ).set_defaults(fn=_cluster)
    me = _cli_args.command(sub, "metrics", "current metric values")
    me.add_argument(
        "names", nargs="*", help="metric names or globs, e.g. 'voltorch.workflows.*' (default: all)"
    )
    me.set_defaults(fn=_metrics)

    er = _cli_args.command(sub, "errors", "recorded errors, or one story by --trace / --correlation")
    er.add_argument("--trace", help="the events and errors of one trace id, in causal order")
    er.add_argument("--correlation", help="the events and errors of one correlation id, in causal order")
    er.set_defaults(fn=_errors)
