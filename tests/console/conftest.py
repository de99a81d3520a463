"""Console fixtures: a server with the console on a free port, an HTTP helper, and a real headless
Chromium driven by Playwright (Debian's /usr/bin/chromium; browsers are never downloaded)."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import voltorch
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

CHROMIUM = os.environ.get("VOLTORCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "console"
ADMIN = "admin-token-0123456789"
AGENT = "agent-token-0123456789"
READER = "reader-token-0123456789"
TOKENS = f"admin:{ADMIN},agent:{AGENT},reader:{READER}"


@dataclass
class Reply:
    status: int
    body: Any


class Http:
    """JSON calls against the console's API."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, token: str = "", headers: dict | None = None) -> Reply:
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return Reply(r.status, json.loads(raw) if r.headers.get_content_type() == "application/json" else raw)
        except urllib.error.HTTPError as err:
            return Reply(err.code, json.loads(err.read()))

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("POST", path, body if body is not None else {}, **kw)


@pytest.fixture
def console_server(config: Config) -> Iterator[VoltorchServer]:
    srv = VoltorchServer(replace(config, ui_port=-1)).start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture
def secured_server(config: Config) -> Iterator[VoltorchServer]:
    srv = VoltorchServer(replace(config, ui_port=-1, auth_tokens=TOKENS)).start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture
def http(console_server: VoltorchServer) -> Http:
    assert console_server.console is not None
    return Http(console_server.console.url)


class Gate:
    """A remote worker (capability `gated`) whose tasks finish only when the test opens their step's gate:
    the test decides when each step of a workflow turns green."""

    TEMPLATE = voltorch.WorkflowTemplate(
        name="gated-release",
        steps=[
            voltorch.Step("fetch", voltorch.AgentTask("fetch sources", capabilities=["gated"])),
            voltorch.Step("build", voltorch.AgentTask("build it", capabilities=["gated"]), depends_on=["fetch"]),
            voltorch.Step("lint", voltorch.AgentTask("lint it", capabilities=["gated"]), depends_on=["fetch"]),
            voltorch.Step("ship", voltorch.AgentTask("ship it", capabilities=["gated"]), depends_on=["build", "lint"]),
        ],
    )

    def __init__(self, client: voltorch.Client):
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        client.workflows.register_template(self.TEMPLATE)
        self.worker = voltorch.Worker(client, "gatekeeper", ["gated"], self._run, max_concurrency=4).start()
        assert self.worker.connected.wait(30)  # bounded

    def gate(self, step_id: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(step_id, threading.Event())

    def open(self, *step_ids: str) -> None:
        for s in step_ids:
            self.gate(s).set()

    def _run(self, task: voltorch.WorkerTask) -> dict:
        gate = self.gate(task.step_id)
        while not gate.wait(0.1):  # bounded by the task's own cancellation and the test's timeout
            if task.cancelled.is_set():
                raise RuntimeError("cancelled")
        return {"step": task.step_id, "text": f"{task.step_id} done: {task.text}", "log": "line\n" * 40}

    def stop(self) -> None:
        self.open(*("fetch", "build", "lint", "ship"))
        self.worker.stop()


@pytest.fixture
def gate_for() -> Iterator[Any]:
    gates: list[Gate] = []

    def make(client: voltorch.Client) -> Gate:
        g = Gate(client)
        gates.append(g)
        return g

    yield make
    for g in gates:
        g.stop()


# -- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium. Absent: a loud skip locally, a failure under CI=true (.ci/run installs it)."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run: {missing}")
        pytest.skip(f"BROWSER TESTS SKIPPED: {missing}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions (the test asserts none)."""

    def __init__(self, browser: Any, base: str, width: int = 1280, height: int = 800):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def open(self, hash_: str = "") -> Any:
        self.page.goto(self.base + hash_)
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """make(server) -> Page; after the test, no page may have logged a console error."""
    pages: list[Page] = []

    def make(server: VoltorchServer, **kw: Any) -> Page:
        assert server.console is not None
        p = Page(browser, server.console.url, **kw)
        pages.append(p)
        return p

    yield make
    errors = [e for p in pages for e in p.errors]
    for p in pages:
        p.context.close()
    assert not errors, f"browser console errors: {errors}"
