"""The Node.js example (examples/node) against a real server: the protos are the whole contract.

The Node worker says hello with its capability over CoordinationService/Connect using a bearer token and
reconnects when the server ends its stream; the Node client exercises state, events with resume, and a
workflow whose first step only that worker can do.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import npm_tools
import pytest
import voltorch
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

ADMIN = "admin-token-for-the-node-test"
AGENT = "agent-token-for-the-node-test"


@pytest.fixture
def secured(config: Config) -> Iterator[VoltorchServer]:
    srv = VoltorchServer(replace(config, auth_tokens=f"admin:{ADMIN},agent:{AGENT}")).start()
    yield srv
    srv.stop(grace=1.0)


def _lines(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, event: str, seen: list[dict], timeout: float = 30) -> dict:
    while True:
        try:
            line = lines.get(timeout=timeout)  # bounded
        except queue.Empty:
            pytest.fail(f"the Node worker did not report {event!r} within {timeout} s; saw {seen}")
        if line is None:
            pytest.fail(f"the Node worker exited before {event!r}; saw {seen}")
        record = json.loads(line)
        seen.append(record)
        if record["event"] == event:
            return record


def test_a_node_worker_does_a_workflow_step_for_a_node_client(secured: VoltorchServer) -> None:
    node = npm_tools.node()
    example = npm_tools.NODE_EXAMPLE
    worker = subprocess.Popen(
        [node, "worker.js", "--target", secured.target, "--token", AGENT, "--agent-id", "node-stats"],
        cwd=example,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[dict] = []
    try:
        lines = _lines(worker)
        welcome = _wait_for(lines, "welcome", seen)
        assert welcome["agent_id"] == "node-stats"
        # Restarting the coordination engine ends every worker stream (SERVER_STOPPING): the worker
        # reconnects with backoff under the same agent id, and that new session does the workflow step.
        with voltorch.Client(secured.target, token=ADMIN) as admin:
            admin.restart_component("coordination")
        ended = _wait_for(lines, "stream_error", seen)
        assert (ended["code"], ended["reason"]) == ("UNAVAILABLE", "SERVER_STOPPING")
        _wait_for(lines, "reconnecting", seen)
        again = _wait_for(lines, "welcome", seen)
        assert again["agent_id"] == "node-stats" and again["session_id"] != welcome["session_id"]

        done = subprocess.run(
            [node, "client.js", "--target", secured.target, "--token", ADMIN, "--text", "one two three four"],
            cwd=example,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])

        assert summary["state"]["conflict_reason"] == "VERSION_CONFLICT"
        assert summary["state"]["watched"] == [{"maxRetries": 3, "tags": ["a", "b"]}, {"maxRetries": 5}]
        assert summary["events"]["seen"] == summary["events"]["published"]  # resumed: none lost, none twice

        wf = summary["workflow"]
        assert wf["status"] == "EXECUTION_STATUS_COMPLETED"
        stats = next(s for s in wf["steps"] if s["step_id"] == "stats")
        assert stats["agent_id"] == "node-stats"
        assert stats["structured_output"] == {
            "words": 4,
            "characters": 18,
            "longest_word": "three",
            "handled_by": "node",
        }

        # The server's own record agrees, read through the Python SDK.
        with voltorch.Client(secured.target, token=ADMIN) as client:
            execution = client.workflows.get(wf["execution_id"])
            assert execution.status == "completed"
            assert execution.step("stats").agent_id == "node-stats"
            assert execution.step("stats").structured_output["handled_by"] == "node"
        assert _wait_for(lines, "result", seen)["output"].startswith("4 words")
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # graceful: half-closes its stream, then exits
        try:
            worker.wait(timeout=15)  # bounded
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=5)
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""


def test_the_readme_node_snippets_run(server: VoltorchServer) -> None:
    node = npm_tools.node()
    readme = (npm_tools.ROOT / "README.md").read_text()
    section = readme[readme.index("## From any other language") : readme.index("## Configuration")]
    blocks = re.findall(r"```js\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the section's two Node snippets"
    # The README's snippets name the documented default address; they run against this test's server (port 0).
    body = "\n".join(blocks).replace("127.0.0.1:50051", server.target)
    script = "(async () => {\n" + body + "\n})().catch((err) => { console.error(err); process.exit(1); });"
    run = subprocess.run(
        [node, "-"],  # from stdin, so require('./api') resolves in examples/node
        input=script,
        cwd=npm_tools.NODE_EXAMPLE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "{ maxRetries: 3 } 1 1" in run.stdout
    assert "google.rpc.ErrorInfo" in run.stdout and "reason: 'VERSION_CONFLICT'" in run.stdout
    assert "google.rpc.PreconditionFailure" in run.stdout


SAMPLE: dict[str, Any] = {
    "null": None,
    "yes": True,
    "no": False,
    "int": 42,
    "float": -1.5,
    "text": 'héllo "quoted"',
    "empty_list": [],
    "empty_object": {},
    "nested": {"list": [1, "two", None, [3], {"four": 4}]},
}

JSON_ROUND_TRIP = """
const api = require('./api');
const { toValue, fromValue } = require('./json');
(async () => {
  const [target, sampleJson] = process.argv.slice(-2);
  const state = api.client('StateService', target);
  const sample = JSON.parse(sampleJson);
  await api.call(state, 'SetKey', { key: 'from.node', value: toValue(sample) });
  const { kv } = await api.call(state, 'GetKey', { key: 'from.python' });
  console.log(JSON.stringify(fromValue(kv.value)));
  state.close();
})().catch((err) => { console.error(err); process.exit(1); });
"""


def test_json_js_converts_values_both_ways(client: voltorch.Client, server: VoltorchServer) -> None:
    node = npm_tools.node()
    client.state.set("from.python", SAMPLE)
    run = subprocess.run(
        [node, "-", server.target, json.dumps(SAMPLE)],
        input=JSON_ROUND_TRIP,
        cwd=npm_tools.NODE_EXAMPLE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout) == SAMPLE  # Python wrote it, Node read it
    assert client.state.get("from.node").value == SAMPLE  # Node wrote it, Python read it
