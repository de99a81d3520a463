"""The web console with a full database: 1,000 executions and 100,000 events.

Seeds a real server in this process (the executions run on the offline agents; the rest of the events are
published in batches), then measures, in headless Chromium when /usr/bin/chromium is there:

- first paint of the Workflows and Events pages: from navigation to the first data row drawn (a fresh
  browser context each time, so nothing is cached). Budget 1 s.
- live update: an event published on the server until its row is in the Events tail. Budget 0.5 s.

and, without a browser, the paged list endpoints the pages call. A row's "vs baseline" is budget / p99,
so >= 1.00x means the slowest sample was within the budget.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from voltorch_server.app import VoltorchServer
from voltorch_server.components.events import NewEvent
from voltorch_server.components.workflows.templates import AgentTaskSpec, StepSpec, Template
from voltorch_server.config import Config

from ._harness import Result

SUITE = "console"
EXECUTIONS = 1000
EVENTS = 100_000
CHROMIUM = os.environ.get("VOLTORCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _seed(srv: VoltorchServer, executions: int, events: int) -> None:
    rt = srv.runtime
    rt.workflows.register_template(
        Template(
            name="bench-one",
            steps=(StepSpec("analyse", AgentTaskSpec("Analyse item", capabilities=("analysis",))),),
        )
    )
    for i in range(executions):
        rt.workflows.start_execution("bench-one", parameters={}, request_id=f"bench-{i}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # bounded: every execution finishes on the offline agent
        active, _ = rt.workflows.list(status="running", page_size_=1)
        queued, _ = rt.workflows.list(status="queued", page_size_=1)
        pending, _ = rt.workflows.list(status="pending", page_size_=1)
        if not (active or queued or pending):
            break
        time.sleep(0.2)
    missing = events - rt.events.last_sequence()
    batch = [NewEvent(type="bench.tick", source="bench", data={"n": 0, "note": "x" * 64})] * 1000
    while missing > 0:
        rt.events.publish_batch(batch[: min(1000, missing)])
        missing = events - rt.events.last_sequence()


def _row(name: str, samples_ms: list[float], budget_ms: float, unit: str = "loads") -> Result:
    s = sorted(samples_ms)
    p50 = statistics.median(s)
    p99 = s[min(len(s) - 1, round(0.99 * len(s) + 0.5) - 1)]
    return Result(
        SUITE,
        name,
        rate=1000.0 / statistics.mean(s),
        p50_ms=p50,
        p99_ms=p99,
        unit=unit,
        baseline=f"{budget_ms:g} ms budget",
        ratio=budget_ms / p99,
        target=1.0,
        rounds=[round(x, 2) for x in s],
    )


def _api(url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            json.loads(r.read())
        out.append((time.perf_counter() - t) * 1000)
    return out


def _first_paint(browser: Any, url: str, row: str, n: int) -> list[float]:
    """Navigation start -> the first data row in the DOM, on the browser's clock (a MutationObserver
    installed before the page's own scripts notes the moment; Playwright's polling is not counted)."""
    watch = (
        "new MutationObserver(() => { if (!window.__row && document.querySelector(%s))"
        " window.__row = performance.now(); }).observe(document, {subtree: true, childList: true});"
    ).replace("%s", json.dumps(row))
    out = []
    for i in range(n + 1):  # the first load warms the browser up and is not counted
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        ctx.add_init_script(watch)
        page = ctx.new_page()
        page.goto(url, wait_until="commit")
        page.wait_for_selector(row, timeout=30_000)
        if i:
            out.append(page.evaluate("window.__row"))
        ctx.close()
    return out


def _live(browser: Any, srv: VoltorchServer, url: str, n: int) -> list[float]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = ctx.new_page()
    page.goto(url + "#/events")
    page.wait_for_function(
        "document.querySelector('#tail-state')?.textContent.includes('live')", timeout=30_000
    )
    page.evaluate(
        """() => { window.seen = {};
          new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes)
            if (n.dataset && n.dataset.type === 'bench.live') window.seen[n.dataset.seq] = performance.timeOrigin + performance.now(); })
          .observe(document.querySelector('#tail'), { childList: true }); }"""
    )
    out = []
    for i in range(n):
        sent = time.time() * 1000
        e = srv.runtime.events.publish(NewEvent(type="bench.live", source="bench", data={"i": i}))[0]
        page.wait_for_function(f"window.seen['{e.sequence}'] !== undefined", timeout=10_000)
        out.append(page.evaluate(f"window.seen['{e.sequence}']") - sent)
    ctx.close()
    return out


def run(args: Any) -> list[Result]:
    quick = getattr(args, "quick", False)
    executions, events = (200, 20_000) if quick else (EXECUTIONS, EVENTS)
    n = 3 if quick else 10
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(port=0, db=str(Path(tmp) / "console.db"), ui_port=-1, watch_interval=60.0)
        srv = VoltorchServer(cfg).start()
        try:
            t = time.monotonic()
            _seed(srv, executions, events)
            seeded = f"{executions:,} executions + {srv.runtime.events.last_sequence():,} events"
            print(f"console: seeded {seeded} in {time.monotonic() - t:.0f}s", flush=True)
            assert srv.console is not None  # started with console=True
            url = srv.console.url
            results.append(
                _row(
                    f"API list executions, page 25 ({seeded})",
                    _api(url + "api/executions?page_size=25", n * 3),
                    100,
                    "calls",
                )
            )
            results.append(
                _row("API list events, page 100", _api(url + "api/events?page_size=100", n * 3), 100, "calls")
            )
            if not Path(CHROMIUM).exists():
                results.append(
                    Result(
                        SUITE, "browser rows", 0, 0, 0, errors=[f"{CHROMIUM} missing: browser rows not run"]
                    )
                )
                return results
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    results.append(
                        _row(
                            "first paint: Workflows page (1st row)",
                            _first_paint(browser, url + "#/workflows", "tbody tr[data-id]", n),
                            1000,
                        )
                    )
                    results.append(
                        _row(
                            "first paint: Events page (1st row)",
                            _first_paint(browser, url + "#/events", "#tail tr[data-seq]", n),
                            1000,
                        )
                    )
                    results.append(
                        _row(
                            "live update: event -> Events tail row",
                            _live(browser, srv, url, n * 2),
                            500,
                            "events",
                        )
                    )
                finally:
                    browser.close()
        finally:
            srv.stop(grace=1.0)
    return results
