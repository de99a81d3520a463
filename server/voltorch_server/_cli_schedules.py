"""`voltorch schedules`: list, get, create, delete, trigger, pause and unpause workflow schedules."""

from __future__ import annotations

import argparse
from typing import Any

from . import _cli_args
from ._cli_workflows import _parse_params
from .cli_output import Output, dumps


def _when(t: Any) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _every(s: Any) -> str:
    if s.cron:
        return s.cron + (f" ({s.time_zone})" if s.time_zone else "")
    return f"every {s.interval:g}s"


def _schedules(args: argparse.Namespace) -> int:
    out = Output(args.output)
    with _cli_args.client(args) as client:
        sc = client.schedules
        action = args.action
        if action not in ("list", "create") and not args.id:
            args.parser.error(f"schedules {action} needs a schedule id")
        if action == "list":
            out.rows(
                ("id", "template", "when", "overlap", "catch-up", "next tick", "started", "paused"),
                sc.list(),
                lambda s: [
                    s.id,
                    s.template_name,
                    _every(s),
                    s.overlap,
                    s.catchup,
                    _when(s.next_tick_time),
                    str(s.ticks_started),
                    "yes" if s.paused else "",
                ],
                title="Schedules",
            )
        elif action == "create":
            if not args.template:
                args.parser.error("schedules create needs --template")
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
            out.record(s, lambda con: con.print(f"{s.id}: next tick {_when(s.next_tick_time)}"))
        elif action == "get":
            s = sc.get(args.id)
            out.record(
                s,
                lambda con: con.print(
                    f"[bold]{s.id}[/] {s.template_name}: {_every(s)}, next {_when(s.next_tick_time)},"
                    f" last {_when(s.last_tick_time)} {s.last_execution_id}, {s.ticks_started} started,"
                    f" {s.ticks_skipped} skipped{', paused' if s.paused else ''}"
                ),
            )
        elif action == "delete":
            sc.delete(args.id)
            out.message(f"{args.id}: deleted")
        elif action == "trigger":
            r = sc.trigger(args.id, request_id=args.request_id or "")
            out.write(dumps(r.execution) if out.json else r.execution.id)
        else:
            s = getattr(sc, action)(args.id)
            out.record(s, lambda con: con.print(f"{s.id}: {'paused' if s.paused else 'active'}"))
    return 0


def add_parsers(sub: Any) -> None:
    p = _cli_args.command(sub, "schedules", "start workflow templates on a cron expression or an interval")
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "get", "create", "delete", "trigger", "pause", "unpause"],
        help="what to do (default: list)",
    )
    p.add_argument("id", nargs="?", help="schedule id (create: optional, default: generated)")
    p.add_argument("--template", help="create: the template to start")
    p.add_argument(
        "--param", "-p", action="append", default=[], help="create: name=value (JSON or text; repeatable)"
    )
    p.add_argument("--cron", help='create: a cron expression, e.g. "0 9 * * 1-5"')
    p.add_argument("--interval", type=float, help="create: seconds between ticks (instead of --cron)")
    p.add_argument("--time-zone", help="create: IANA time zone of the cron expression (default: UTC)")
    p.add_argument(
        "--overlap",
        default="skip",
        choices=["skip", "buffer_one", "allow"],
        help="create: a tick while the previous execution runs (default: skip)",
    )
    p.add_argument(
        "--catchup",
        default="latest",
        choices=["skip", "latest", "all"],
        help="create: ticks missed while the server was down (default: latest)",
    )
    p.add_argument("--paused", action="store_true", help="create: paused (default: active)")
    p.add_argument("--request-id", help="trigger: idempotency key")
    p.set_defaults(fn=_schedules, parser=p)
