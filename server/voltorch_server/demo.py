"""`make run`: the product's main job in one command.

Starts a server in this process on the embedded SQLite database, runs ExecuteCompleteWorkflow on the seed's
example requirement with the built-in agents (offline, or OpenAI-compatible when OPENAI_API_KEY is set),
prints every step as it happens (from WatchExecution), then the result, which agents did the work and where
the data lives. Exits 0 when the workflow completed.

    python -m voltorch_server.demo --db ./voltorch.db [--requirement "..."] [--port 0]

`follow()` and `report()` are also what `voltorch run "<requirement>"` prints against a running server.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from . import heap
from .cli_output import console, shorten

SEED_REQUIREMENT = "Create a simple user authentication system with login and registration functionality"

_ICONS = {
    "started": "[cyan]▶[/]",
    "completed": "[green]✔[/]",
    "failed": "[red]✘[/]",
    "retrying": "[yellow]↻[/]",
    "skipped": "[dim]⤼[/]",
}


def _detail(step: Any) -> str:
    """One line saying what a finished step produced."""
    out = step.structured_output
    if step.children:
        return f"{sum(c.status == 'completed' for c in step.children)}/{len(step.children)} tasks done"
    if step.step_id == "analyse" and isinstance(out, dict):
        return shorten(str(out.get("summary", "")), 100)
    if step.step_id == "generate_tasks" and isinstance(out, dict) and isinstance(out.get("tasks"), list):
        return f"{len(out['tasks'])} tasks planned"
    if step.step_id == "review" and isinstance(out, dict):
        verdict = "approved" if out.get("approved") else "changes requested"
        return f"{verdict}, score {out.get('score', '?')}"
    if isinstance(out, dict) and out.get("deliverable"):
        files = [
            f["path"]
            for f in out.get("files") or []
            if isinstance(f, dict) and isinstance(f.get("path"), str)
        ]
        return f"{out['deliverable']}" + (f" ({', '.join(files)})" if files else "")
    if isinstance(out, dict) and isinstance(out.get("summary"), str):
        return "final report written"
    return shorten(step.output or "", 100)


def _step_count(execution: Any) -> int:
    return sum(1 + len(s.children) for s in execution.steps)


def follow(client: Any, execution_id: str, console: Console, *, timeout: float | None = None) -> Any:
    """Print each step as it happens until the execution ends; return the finished execution.

    The caller announces the execution; this prints its steps, and pauses/resumes. Each completed step
    shows [done/total]: total is every step known so far (the template's, then a fan-out's children as
    they appear), so it only grows. The status line under the steps shows the text the agents are
    writing, live."""
    started: dict[str, float] = {}
    completed: set[str] = set()
    total = _step_count(client.workflows.get(execution_id))
    with console.status("[bold]running…", spinner="dots") as status:
        for ev in client.workflows.watch(execution_id, timeout=timeout, deltas=True):
            data = ev.data if isinstance(ev.data, dict) else {}
            if ev.delta:
                live = _live(ev.step_id, ev.delta)
                status.update(f"[bold]running…[/] {len(completed)}/{total} steps done  {live}")
                continue
            kind = ev.type.rsplit(".", 1)[-1]
            if ev.type.startswith("workflow.execution."):
                if kind in ("resumed", "paused", "queued"):
                    console.print(f"[bold]Execution {execution_id} {kind}[/]")
                continue
            if not ev.type.startswith("workflow.step."):
                continue
            step_id = ev.step_id
            indent = "    " if data.get("parent_id") else "  "
            label = f"{indent}{_ICONS.get(kind, '·')} {step_id:<18} {shorten(data.get('name', ''), 48):<48}"
            if kind == "started":
                started[step_id] = time.monotonic()
                extra = f"[dim]fan-out over {data['items']} tasks[/]" if data.get("items") is not None else ""
                attempt = data.get("attempt", 1)
                console.print(label + (f" [yellow]attempt {attempt}[/]" if attempt > 1 else "") + f" {extra}")
            elif kind == "completed":
                completed.add(step_id)
                execution = client.workflows.get(execution_id)
                total = max(total, _step_count(execution), len(completed))
                step = _find_step(execution, step_id)
                agent = data.get("agent_id") or ", ".join(data.get("agents", [])) or ""
                took = time.monotonic() - started.get(step_id, time.monotonic())
                line = f"{label} [magenta]{agent:<10}[/] [dim]{took:5.2f}s[/] [dim]\\[{len(completed)}/{total}][/]"
                console.print(line + (f"  {_detail(step)}" if step else ""))
            elif kind == "retrying":
                err = data.get("error", {})
                console.print(
                    f"{label} [yellow]{err.get('code')}: {shorten(err.get('message', ''), 80)} — retry in {data.get('delay')}s[/]"
                )
            elif kind == "failed":
                err = data.get("error", {})
                console.print(f"{label} [red]{err.get('code')}: {shorten(err.get('message', ''), 120)}[/]")
            elif kind == "waiting":
                what = data.get("kind", "")
                hint = ""
                if what in ("approval", "signal"):
                    verb = "approve|reject" if what == "approval" else f"signal --name {data.get('signal')}"
                    hint = f" — voltorch workflows {verb} {execution_id}"
                prompt = shorten(data.get("prompt", ""), 80)
                console.print(f"{label} [yellow]waiting for {what}[/] {prompt}[dim]{hint}[/]")
            else:
                console.print(f"{label} [dim]{data.get('reason', '')}[/]")
            status.update(f"[bold]running…[/] {len(completed)}/{total} steps done")
    return client.workflows.get(execution_id)


def _live(step_id: str, delta: str) -> str:
    """The tail of an agent's latest line, for the status line (markup escaped)."""
    lines = [line for line in delta.splitlines() if line.strip()]
    tail = lines[-1].strip()[-70:] if lines else ""
    return f"[cyan]{escape(step_id)}[/] [dim]{escape(tail)}[/]"


def _find_step(execution: Any, step_id: str) -> Any:
    for s in execution.steps:
        if s.step_id == step_id:
            return s
        for c in s.children:
            if c.step_id == step_id:
                return c
    return None


def report(
    client: Any,
    execution: Any,
    console: Console,
    *,
    db: str | None = None,
    flags: str = "",
    where: bool = True,
) -> None:
    """The result, who did what, and where the data lives. The closing commands run as printed: `flags`
    are the global flags that reach the same server (e.g. " --target host:port"); with `db` the server
    is this process's own, gone once it exits, so the first command starts it again. `where=False` leaves
    out where the data lives (a throwaway database, gone at exit)."""
    took = (execution.end_time - execution.start_time).total_seconds() if execution.end_time else 0.0
    color = "green" if execution.status == "completed" else "red"
    console.print()
    console.print(f"[bold {color}]Workflow {execution.status}[/] in {took:.2f}s — execution {execution.id}")
    u = execution.usage
    if u.llm_calls or u.total_tokens:
        console.print(
            f"[dim]usage: {u.llm_calls} model calls, {u.prompt_tokens} tokens in, "
            f"{u.completion_tokens} out, ${u.cost:.4f}[/]"
        )
    if execution.error:
        console.print(f"[red]{execution.error.code}: {execution.error.message}[/]")
    summary = execution.result.get("summary") if isinstance(execution.result, dict) else None
    if isinstance(summary, str):
        console.print(Panel(Markdown(summary), title="Result: summary", border_style=color))

    agents = {a.id: a for a in client.coordination.list_agents()}
    table = Table(title="Who did the work", show_lines=False)
    for col in ("step", "task", "agent", "kind", "attempts", "status"):
        table.add_column(col)
    for s in execution.steps:
        for row in [s, *s.children]:
            if row.children:
                continue
            a = agents.get(row.agent_id)
            kind = a.kind if a else ""
            if a and a.kind == "llm" and a.llm:
                kind = f"llm ({a.llm.model})"
            table.add_row(
                row.step_id, shorten(row.name, 50), row.agent_id, kind, str(row.attempts), row.status
            )
    console.print(table)
    kinds = {
        agents[a].kind for a in {r.agent_id for s in execution.steps for r in [s, *s.children]} if a in agents
    }
    if kinds == {"offline"}:
        console.print(
            "[dim]The built-in agents ran offline (deterministic, no LLM). Set OPENAI_API_KEY (and optionally "
            "VOLTORCH_OPENAI_BASE_URL / VOLTORCH_OPENAI_MODEL) to use an OpenAI-compatible model.[/]"
        )
    if not where:
        return

    keys = [kv.key for kv in client.state.list(f"requirement.{execution.id}")]
    console.print()
    console.print("[bold]Where the data lives[/]")
    if db:
        console.print(f"  database    {Path(db).resolve()} (SQLite, WAL): executions, steps, events, state")
    console.print(f"  execution   {execution.id} (GetExecution / WatchExecution replay it)")
    console.print("  state keys  " + "\n              ".join(keys))
    console.print()
    if db:
        console.print(
            f"[bold]Look again[/] (start the server on this database first: voltorch serve --db {Path(db).resolve()})"
        )
    else:
        console.print("[bold]Look again[/]")
    for command in (
        f"voltorch workflows get {execution.id}",
        f"voltorch state get requirement.{execution.id}",
    ):
        console.print(f"  {command}{flags}", soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voltorch_server.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default="./voltorch.db", help="SQLite database file (created if missing)")
    p.add_argument("--requirement", default=SEED_REQUIREMENT)
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--ui-port", type=int, default=0, help="serve the web console on this port (0 = off)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import voltorch

    from ._cli_args import target_flags
    from .app import VoltorchServer
    from .config import load
    from .errors import DatabaseInUse, StartupError

    out = console()
    cfg = load(None, host="127.0.0.1", port=args.port, db=args.db, ui_port=args.ui_port)
    try:
        server = VoltorchServer(cfg).start()
    except DatabaseInUse as busy:
        # `make serve` already owns the file: run the workflow on that server instead of refusing.
        if not busy.address:
            print(f"voltorch: {busy}", file=sys.stderr)
            return 2
        out.print(
            f"[bold]voltorch[/] server {busy.address} (pid {busy.pid}) already owns {Path(cfg.db).resolve()}: "
            "running the workflow there"
        )
        with voltorch.Client(busy.address, timeout=30) as client:
            return _headline(client, out, args, flags=target_flags(busy.address))
    except StartupError as exc:
        print(f"voltorch: {exc}", file=sys.stderr)
        return 2
    heap.settle()  # as `voltorch serve`: start-up's objects out of full collections
    try:
        with voltorch.Client(server.target, timeout=30) as client:
            out.print(f"[bold]voltorch[/] server on {server.target}, database {Path(cfg.db).resolve()}")
            if server.console is not None:
                out.print(
                    f"Console: [bold link={server.console.url}]{server.console.url}[/] (open it to watch)"
                )
            code = _headline(client, out, args, db=cfg.db)
            if server.console is not None and sys.stdin.isatty():
                out.print(f"\nThe console stays open on {server.console.url} — Ctrl-C to stop.")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            return code
    finally:
        server.stop(grace=2.0)


def _headline(
    client: Any, out: Console, args: argparse.Namespace, *, db: str | None = None, flags: str = ""
) -> int:
    agents = client.coordination.list_agents()
    kinds = sorted(
        {f"OpenAI-compatible, model {a.llm.model}" if a.kind == "llm" and a.llm else a.kind for a in agents}
    )
    out.print(f"Agents: {', '.join(a.id for a in agents)} ({', '.join(kinds)})")
    out.print(f"Requirement: [italic]{args.requirement}[/]")
    started = client.workflows.execute_complete(args.requirement)
    out.print(f"[bold]Execution {started.execution.id}[/] started")
    execution = follow(client, started.execution.id, out, timeout=args.timeout)
    report(client, execution, out, db=db, flags=flags)
    return 0 if execution.status == "completed" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: the server stopped; the execution's checkpoints stay in the database
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
