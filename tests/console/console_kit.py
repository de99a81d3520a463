"""Helpers of the console tests: tokens, a JSON client for the console's API, and a gated remote worker."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voltorch

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

    def call(
        self, method: str, path: str, body: Any = None, token: str = "", headers: dict | None = None
    ) -> Reply:
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return Reply(
                    r.status, json.loads(raw) if r.headers.get_content_type() == "application/json" else raw
                )
        except urllib.error.HTTPError as err:
            return Reply(err.code, json.loads(err.read()))

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("POST", path, body if body is not None else {}, **kw)


class Gate:
    """A remote worker (capability `gated`) whose tasks finish only when the test opens their step's gate:
    the test decides when each step of a workflow turns green."""

    TEMPLATE = voltorch.WorkflowTemplate(
        name="gated-release",
        steps=[
            voltorch.Step("fetch", voltorch.AgentTask("fetch sources", capabilities=["gated"])),
            voltorch.Step(
                "build", voltorch.AgentTask("build it", capabilities=["gated"]), depends_on=["fetch"]
            ),
            voltorch.Step(
                "lint", voltorch.AgentTask("lint it", capabilities=["gated"]), depends_on=["fetch"]
            ),
            voltorch.Step(
                "ship", voltorch.AgentTask("ship it", capabilities=["gated"]), depends_on=["build", "lint"]
            ),
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
