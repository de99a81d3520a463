"""The workflow commands of the `voltorch` CLI: `run "<requirement>"` (live progress) and `workflows`
(list, get, watch, start, cancel, pause, resume, signal, approve, reject, templates)."""

from __future__ import annotations

import argparse
import itertools
import json
import signal
from typing import Any

from voltorch.wire import EXECUTION_STATUSES

from . import _cli_args
from .cli_output import Output, dumps, new_table, shorten


def _run(args: argparse.Namespace) -> int:
    from .demo import follow, report

    out = Output(args.output, default="progress")
    console = out.console
    flags = _cli_args.target_flags(args.target)
    with _cli_args.client(args) as client:
        started = client.workflows.execute_complete(
            args.requirement,
            request_id=args.request_id or "",
            max_tasks=args.max_tasks,
            max_parallel=args.max_parallel,
            skip_review=args.skip_review,
            budget=_budget(args),
            approve_tasks=args.approve_tasks,
        )
        e = started.execution
        if args.detach:
            out.write(dumps(e) if out.json else e.id)
            return 0
        try:
            if out.json:
                execution = client.workflows.wait(e.id)
                out.record(execution, lambda _console: None)
            else:
                console.print(
                    f"[bold]Execution {e.id}[/] {'attached (existing)' if started.existing else 'started'}"
                )
                execution = follow(client, e.id, console)
                report(client, execution, console, flags=flags)
        except KeyboardInterrupt:
            return _interrupted(args, client, e.id, flags)
        return 0 if execution.status == "completed" else 1


def _budget(args: argparse.Namespace) -> Any:
    import voltorch

    if not (args.max_tokens or args.max_cost or args.max_llm_calls):
        return None
    return voltorch.Budget(args.max_tokens, args.max_cost, args.max_llm_calls)


def _interrupted(args: argparse.Namespace, client: Any, execution_id: str, flags: str) -> int:
    """Ctrl-C: stop following without a question or a traceback; the execution runs on, on the server,
    unless --cancel-on-interrupt. Say how to get back to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while we print changes nothing
    if args.cancel_on_interrupt:
        e = client.workflows.cancel(execution_id, "interrupted: voltorch run --cancel-on-interrupt")
        print(f"\nCancelled execution {execution_id} ({e.status}).", flush=True)
        return 130
    print(
        f"\nStopped following; execution {execution_id} keeps running on the server.\n"
        f"  re-attach:  voltorch workflows watch {execution_id}{flags}\n"
        f"  cancel:     voltorch workflows cancel {execution_id}{flags}",
        flush=True,
    )
    return 130


def _duration(e: Any) -> str:
    if e.start_time and e.end_time:
        return f"{(e.end_time - e.start_time).total_seconds():.2f}s"
    return ""


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"voltorch: error: --param takes name=value (got {pair!r})")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _workflows(args: argparse.Namespace) -> int:
    from .demo import follow

    out = Output(args.output)
    console = out.console
    with _cli_args.client(args) as client:
        wf = client.workflows
        action = args.action
        if action not in ("list", "templates") and not args.id:
            what = "a template name" if action == "start" else "an execution id"
            args.parser.error(f"workflows {action} needs {what}")
        if action == "list":

            def cells(e: Any) -> list[str]:
                created = e.create_time.astimezone().strftime("%Y-%m-%d %H:%M:%S") if e.create_time else ""
                return [e.id, f"{e.template_name} v{e.template_version}", e.status, created, _duration(e)]

            listing = wf.list(status=args.status or "", template_name=args.template or "")
            out.rows(
                ("id", "template", "status", "created", "took"),
                itertools.islice(listing, args.limit),
                cells,
                title="Workflow executions (newest first)",
            )
        elif action == "templates":
            out.rows(
                ("name", "version", "category", "steps", "description"),
                wf.list_templates(all_versions=args.all),
                lambda t: [t.name, str(t.version), t.category, str(len(t.steps)), shorten(t.description, 60)],
                title="Workflow templates",
            )
        elif action == "get":
            e = wf.get(args.id)
            if args.json:
                out = Output("json")
            out.record(e, lambda con: _draw_execution(con, e))
        elif action == "watch":
            if out.json:
                for ev in wf.watch(args.id):
                    out.write(dumps(ev.event))
                return 0
            e = follow(client, args.id, console)
            console.print(f"[bold]{e.id}[/]: {e.status}")
        elif action == "start" and args.wait:
            e = wf.run(args.id, _parse_params(args.param), request_id=args.request_id or "")
            out.record(e, lambda con: _draw_execution(con, e))
            return 0 if e.status == "completed" else 1
        elif action == "start":
            r = wf.start(args.id, _parse_params(args.param), request_id=args.request_id or "")
            out.write(dumps(r.execution) if out.json else r.execution.id)
        elif action == "signal":
            if not args.name:
                args.parser.error("workflows signal needs --name")
            payload = _parse_params([f"payload={args.payload}"])["payload"] if args.payload else None
            sent = wf.signal(args.id, args.name, payload, request_id=args.request_id or "", sender=args.by)
            note = "already sent" if sent.existing else "sent"
            out.record(sent, lambda con: con.print(f"{sent.signal.id}: {note}"))
        elif action in ("approve", "reject"):
            r = getattr(wf, action)(
                args.id,
                comment=args.reason,
                by=args.by,
                signal=args.name or "approval",
                request_id=args.request_id or "",
            )
            done = "approved" if action == "approve" else "rejected"
            out.record(
                r, lambda con: con.print(f"{r.signal.id}: {done}{' (already sent)' if r.existing else ''}")
            )
        else:
            e = wf.resume(args.id) if action == "resume" else getattr(wf, action)(args.id, args.reason)
            out.record(e, lambda con: con.print(f"{e.id}: {e.status}"))
    return 0


def _draw_execution(console: Any, e: Any) -> None:
    console.print(f"[bold]{e.id}[/] {e.template_name} v{e.template_version}: {e.status} {_duration(e)}")
    if e.error:
        console.print(f"[red]{e.error.code}: {e.error.message}[/]")
    table = new_table()
    for col in ("step", "name", "status", "attempts", "agent", "error"):
        table.add_column(col)
    for s in e.steps:
        for row in (s, *s.children):
            err = f"{row.error.code}: {shorten(row.error.message, 60)}" if row.error else ""
            table.add_row(
                row.step_id, shorten(row.name, 40), row.status, str(row.attempts), row.agent_id, err
            )
    console.print(table)
    for w in e.waiting:
        due = f" (until {w.deadline.astimezone():%Y-%m-%d %H:%M:%S})" if w.deadline else ""
        what = f", signal {w.signal!r}" if w.signal else ""
        console.print(f"[yellow]waiting[/] {w.step_id}: {w.kind}{what}{due}")
        if w.prompt:
            console.print(f"  {w.prompt}")
        if w.data is not None:
            console.print(f"  {shorten(json.dumps(w.data, ensure_ascii=False), 500)}")


def add_parsers(sub: Any) -> None:
    """Add `run` and `workflows` to the CLI's subparsers."""
    r = _cli_args.command(sub, "run", "run the complete workflow on a requirement, with live progress")
    r.add_argument("requirement", help='what to build, e.g. "a CLI calculator"')
    r.add_argument(
        "--max-tasks",
        type=int,
        default=0,
        help="most tasks the plan may hold (default: 0 = the planner's choice)",
    )
    r.add_argument(
        "--max-parallel", type=int, default=0, help="most tasks run at once (default: 0 = no limit)"
    )
    r.add_argument("--skip-review", action="store_true", help="skip the review step")
    r.add_argument(
        "--approve-tasks",
        action="store_true",
        help="wait for approval of the task list before running it (voltorch workflows approve <id>)",
    )
    r.add_argument("--request-id", help="idempotency key: re-running with it attaches to the same execution")
    r.add_argument("--detach", action="store_true", help="print the execution id and return at once")
    r.add_argument("--max-tokens", type=int, default=0, help="budget: fail before a call beyond this")
    r.add_argument("--max-cost", type=float, default=0.0, help="budget in USD (priced by llm_prices)")
    r.add_argument("--max-llm-calls", type=int, default=0, help="budget: model calls")
    r.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="Ctrl-C cancels the execution (default: Ctrl-C only stops following; it runs on)",
    )
    r.set_defaults(fn=_run)

    w = _cli_args.command(sub, "workflows", "list, inspect and control workflow executions and templates")
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
        help="what to do (default: list)",
    )
    w.add_argument("id", nargs="?", help="execution id (template name for start)")
    w.add_argument(
        "--status", choices=list(EXECUTION_STATUSES.numbers), help="list: only this status (default: any)"
    )
    w.add_argument("--template", help="list: only this template (default: any)")
    w.add_argument("--limit", type=int, default=50, help="list: at most this many (default: 50)")
    w.add_argument(
        "--reason",
        "--comment",
        default="",
        help="cancel/pause: recorded with the execution; approve/reject: the comment",
    )
    w.add_argument(
        "--name", default="", help="signal: the signal's name; approve/reject: (default: approval)"
    )
    w.add_argument("--payload", default="", help="signal: the payload (JSON or text; default: none)")
    w.add_argument(
        "--by", default="", help="signal/approve/reject: who sends it (default: your token's role)"
    )
    w.add_argument(
        "--param", "-p", action="append", default=[], help="start: name=value (JSON or text; repeatable)"
    )
    w.add_argument("--request-id", help="start/signal/approve/reject: idempotency key")
    w.add_argument(
        "--wait",
        action="store_true",
        help="start: wait for the end and show the execution (exit 1 unless it completed)",
    )
    w.add_argument("--json", action="store_true", help="get: the whole execution as JSON (same as -o json)")
    w.add_argument("--all", action="store_true", help="templates: every version (default: the latest)")
    w.set_defaults(fn=_workflows, parser=w)
