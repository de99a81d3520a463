"""The workflow commands of the `voltorch` CLI: `run "<requirement>"` (live progress) and `workflows`
(list, get, watch, start, cancel, pause, resume, signal, approve, reject, templates)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import _cli_ops


def _run(args: argparse.Namespace) -> int:
    from .demo import follow, report

    console = _cli_ops.console()
    with _cli_ops.client(args) as client:
        started = client.workflows.execute_complete(
            args.requirement,
            request_id=args.request_id or "",
            max_tasks=args.max_tasks,
            max_parallel=args.max_parallel,
            skip_review=args.skip_review,
        )
        e = started.execution
        console.print(
            f"[bold]Execution {e.id}[/] ({'existing' if started.existing else 'started'}, {e.status})"
        )
        if args.detach:
            print(e.id)
            return 0
        execution = follow(client, e.id, console)
        report(client, execution, console)
        return 0 if execution.status == "completed" else 1


def _duration(e: Any) -> str:
    if e.start_time and e.end_time:
        return f"{(e.end_time - e.start_time).total_seconds():.2f}s"
    return ""


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"voltorch: --param takes name=value (got {pair!r})")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _workflows(args: argparse.Namespace) -> int:
    from .demo import follow

    console = _cli_ops.console()
    with _cli_ops.client(args) as client:
        wf = client.workflows
        action = args.action
        if (
            action in ("get", "watch", "cancel", "pause", "resume", "signal", "approve", "reject")
            and not args.id
        ):
            raise SystemExit(f"voltorch: workflows {action} needs an execution id")
        if action == "list":
            table = _cli_ops.new_table(title="Workflow executions (newest first)")
            for col in ("id", "template", "status", "created", "took"):
                table.add_column(col)
            for i, e in enumerate(wf.list(status=args.status or "", template_name=args.template or "")):
                if i >= args.limit:
                    break
                created = e.create_time.astimezone().strftime("%Y-%m-%d %H:%M:%S") if e.create_time else ""
                table.add_row(
                    e.id, f"{e.template_name} v{e.template_version}", e.status, created, _duration(e)
                )
            console.print(table)
        elif action == "templates":
            table = _cli_ops.new_table(title="Workflow templates")
            for col in ("name", "version", "category", "steps", "description"):
                table.add_column(col)
            for t in wf.list_templates(all_versions=args.all):
                table.add_row(t.name, str(t.version), t.category, str(len(t.steps)), t.description[:60])
            console.print(table)
        elif action == "get":
            e = wf.get(args.id)
            if args.json:
                from dataclasses import asdict

                print(json.dumps(asdict(e), indent=2, default=str))
                return 0
            console.print(
                f"[bold]{e.id}[/] {e.template_name} v{e.template_version}: {e.status} {_duration(e)}"
            )
            if e.error:
                console.print(f"[red]{e.error.code}: {e.error.message}[/]")
            table = _cli_ops.new_table()
            for col in ("step", "name", "status", "attempts", "agent", "error"):
                table.add_column(col)
            for s in e.steps:
                for row in (s, *s.children):
                    err = f"{row.error.code}: {row.error.message[:60]}" if row.error else ""
                    table.add_row(
                        row.step_id, row.name[:40], row.status, str(row.attempts), row.agent_id, err
                    )
            console.print(table)
            for w in e.waiting:
                due = f" (until {w.deadline.astimezone():%Y-%m-%d %H:%M:%S})" if w.deadline else ""
                what = f"signal {w.signal!r}" if w.signal else w.kind
                console.print(f"[yellow]waiting[/] {w.step_id}: {w.kind}, {what}{due}")
                if w.prompt:
                    console.print(f"  {w.prompt}")
                if w.data is not None:
                    console.print(f"  {json.dumps(w.data, ensure_ascii=False)[:500]}")
        elif action == "signal":
            if not args.name:
                raise SystemExit("voltorch: workflows signal needs --name")
            payload = _parse_params([f"payload={args.payload}"])["payload"] if args.payload else None
            r = wf.signal(args.id, args.name, payload, request_id=args.request_id or "", sender=args.by)
            console.print(f"{r.signal.id}: {'already sent' if r.existing else 'sent'}")
        elif action in ("approve", "reject"):
            r = getattr(wf, action)(
                args.id,
                comment=args.reason,
                by=args.by,
                signal=args.name or "approval",
                request_id=args.request_id or "",
            )
            done = "approved" if action == "approve" else "rejected"
            console.print(f"{r.signal.id}: {done}{' (already sent)' if r.existing else ''}")
        elif action == "watch":
            e = follow(client, args.id, console)
            console.print(f"[bold]{e.id}[/]: {e.status}")
        elif action == "start":
            if not args.id:
                raise SystemExit("voltorch: workflows start needs a template name")
            r = wf.start(args.id, _parse_params(args.param), request_id=args.request_id or "")
            print(r.execution.id)
        else:
            e = wf.resume(args.id) if action == "resume" else getattr(wf, action)(args.id, args.reason)
            console.print(f"{e.id}: {e.status}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add `run` and `workflows` to the CLI's subparsers."""
    r = sub.add_parser("run", help="run the complete workflow on a requirement, with live progress")
    r.add_argument("requirement", help='what to build, e.g. "a CLI calculator"')
    r.add_argument("--max-tasks", type=int, default=0)
    r.add_argument("--max-parallel", type=int, default=0)
    r.add_argument("--skip-review", action="store_true")
    r.add_argument("--request-id", help="idempotency key: re-running with it attaches to the same execution")
    r.add_argument("--detach", action="store_true", help="print the execution id and return at once")
    r.set_defaults(fn=_run)

    w = sub.add_parser("workflows", help="list, inspect and control workflow executions and templates")
    w.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=[
            "list",
            "get",
            "watch",
            "start",
            "cancel",
            "pause",
            "resume",
            "signal",
            "approve",
            "reject",
            "templates",
        ],
    )
    w.add_argument("id", nargs="?", help="execution id (template name for start)")
    w.add_argument("--status", help="list: only this status (running, completed, failed, ...)")
    w.add_argument("--template", help="list: only this template")
    w.add_argument("--limit", type=int, default=50)
    w.add_argument(
        "--reason",
        "--comment",
        default="",
        help="cancel/pause: recorded with the execution; approve/reject: comment",
    )
    w.add_argument("--name", default="", help="signal: the signal's name; approve/reject: default 'approval'")
    w.add_argument("--payload", default="", help="signal: the payload (JSON or text)")
    w.add_argument(
        "--by", default="", help="signal/approve/reject: who sends it (default: your token's role)"
    )
    w.add_argument("--param", "-p", action="append", default=[], help="start: name=value (JSON or text)")
    w.add_argument("--request-id", help="start/signal/approve/reject: idempotency key")
    w.add_argument("--json", action="store_true", help="get: the whole execution as JSON")
    w.add_argument("--all", action="store_true", help="templates: every version")
    w.set_defaults(fn=_workflows)
    for p in (r, w):
        _cli_ops.add_target(p)
