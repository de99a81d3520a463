"""Console fixtures: a server with the console on a free port, an HTTP helper, and a real headless
Chromium driven by Playwright (Debian's /usr/bin/chromium; browsers are never downloaded)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import voltorch
from console_kit import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TOKENS, Gate, Http
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium. Absent: a loud skip locally, a failure under CI=true (.ci/run installs it).

    Module-scoped: Playwright's sync API keeps an asyncio loop running in this thread while it is open,
    which would break later tests that call asyncio.run()."""
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
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
        )
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
