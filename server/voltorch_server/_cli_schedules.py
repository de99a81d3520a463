"""`voltorch schedules`: list, get, create, delete, trigger, pause and unpause workflow schedules."""

from __future__ import annotations

import argparse
from typing import Any

from . import _cli_ops
from ._cli_workflows import _parse_params


def _when(t: Any) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _schedules(args: argparse.Namespace) -> int:
    console = _cli_ops.console()
    with _cli_ops.client(args) as client:
        sc = client.schedules
        action = args.action
        if action not in ("list", "create") and not args.id:
            raise SystemExit(f"voltorch: schedules {action} needs a schedule id")
        if action == "list":
            table = _cli_ops.new_table(title="Schedules")
            for col in ("id", "template", "when", "overlap", "catch-up", "next tick", "started", "paused"):
                table.add_column(col)
            for s in sc.list():
                when = (
                    s.cron + (f" ({s.time_zone})" if s.time_zone else "")
                    if s.cron
                    else f"every {s.interval:g}s"
                )
                table.add_row(
                    s.id,
                    s.template_name,
                    when,
                    s.overlap,
                    s.catchup,
                    _when(s.next_tick_time),
                    str(s.ticks_started),
                    "yes" if s.paused else "",
                )
            console.print(table)
        elif action == "create":
            if not args.template:
                raise SystemExit("voltorch: schedules create needs --template")
            s = sc.create(
                args.template,
                _parse_params(args.param),
                cron=args.cron or "",
                interval=args.interval,
                time_zone=args.time_zone or "",
                overlap=args.overlap,
                catchup=args.catchup,
                paused=args.paused,
                schedule_id=args.id or "",
            )
            console.print(f"{s.id}: next tick {_when(s.next_tick_time)}")
        elif action == "get":
            s = sc.get(args.id)
            console.print(
                f"[bold]{s.id}[/] {s.template_name}: {s.cron or f'every {s.interval:g}s'}"
                f" next {_when(s.next_tick_time)}, last {_when(s.last_tick_time)} ({s.last_execution_id}),"
                f" {s.ticks_started} started, {s.ticks_skipped} skipped{', paused' if s.paused else ''}"
            )
        elif action == "delete":
            sc.delete(args.id)
            console.print(f"{args.id}: deleted")
        elif action == "trigger":
            r = sc.trigger(args.id, request_id=args.request_id or "")
            print(r.execution.id)
        else:
            s = getattr(sc, action)(args.id)
            console.print(f"{s.id}: {'paused' if s.paused else 'active'}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("schedules", help="start workflow templates on a cron expression or an interval")
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "get", "create", "delete", "trigger", "pause", "unpause"],
    )
    p.add_argument("id", nargs="?", help="schedule id (create: optional)")
    p.add_argument("--template", help="create: the template to start")
    p.add_argument("--param", "-p", action="append", default=[], help="create: name=value (JSON or text)")
    p.add_argument("--cron", help='create: a cron expression, e.g. "0 9 * * 1-5"')
    p.add_argument("--interval", type=float, help="create: seconds between ticks (instead of --cron)")
    p.add_argument("--time-zone", help="create: IANA time zone of the cron expression (default UTC)")
    p.add_argument("--overlap", default="skip", choices=["skip", "buffer_one", "allow"])
    p.add_argument("--catchup", default="latest", choices=["skip", "latest", "all"])
    p.add_argument("--paused", action="store_true", help="create: paused")
    p.add_argument("--request-id", help="trigger: idempotency key")
    p.set_defaults(fn=_schedules)
    _cli_ops.add_target(p)
