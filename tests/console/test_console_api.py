"""The console's HTTP API against a real server: the components' answers, paging, errors, roles, and
server-sent events that resume after a reconnect."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import voltorch
from console_kit import ADMIN, AGENT, READER, Http
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config
from voltorch_server.errors import StartupError


def read_sse(url: str, n: int, headers: dict | None = None) -> list[dict]:
    """The first n `event` messages of a stream (the server replays them, so this never waits long)."""
    req = urllib.request.Request(url, headers=headers or {})
    out: list[dict] = []
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers.get_content_type() == "text/event-stream"
        msg: dict = {}
        for raw in r:
            line = raw.decode().rstrip("\n")
            if not line:
                if msg.get("event") == "event":
                    out.append({**json.loads(msg["data"]), "sse_id": int(msg["id"])})
                    if len(out) == n:
                        return out
                msg = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            msg[field] = value
    return out


def test_console_is_off_unless_a_port_is_set(config: Config) -> None:
    srv = VoltorchServer(config).start()
    try:
        assert srv.console is None
    finally:
        srv.stop(grace=1.0)


def test_assets_are_served_and_contained(http: Http) -> None:
    index = http.get("/")
    assert index.status == 200 and b'type="module"' in index.body
    assert http.get("/app.js").status == 200
    assert http.get("/pages/execution.js").status == 200
    assert http.get("/../pyproject.toml").status == 404
    assert http.get("/%2e%2e/__init__.py").status == 404
    assert http.post("/index.html").status == 405


def test_executions_list_pages_and_filters(console_server: VoltorchServer, http: Http) -> None:
    with voltorch.Client(console_server.target) as client:
        ids = []
        for i in range(3):
            e = client.workflows.execute_complete(f"Write a haiku number {i}").execution
            ids.append(e.id)
            for _ in client.workflows.watch(e.id):
                pass
    first = http.get("/api/executions?page_size=2")
    assert first.status == 200
    assert [e["id"] for e in first.body["items"]] == ids[::-1][:2]  # newest first
    assert first.body["items"][0]["status"] == "completed"
    assert first.body["items"][0]["steps_done"] == first.body["items"][0]["steps_total"] > 0
    rest = http.get(f"/api/executions?page_size=2&page_token={first.body['next_page_token']}")
    assert [e["id"] for e in rest.body["items"]] == [ids[0]] and rest.body["next_page_token"] == ""
    assert http.get("/api/executions?status=running").body["items"] == []
    bad = http.get("/api/executions?status=bogus")
    assert bad.status == 400 and bad.body["error"]["field_violations"][0]["field"] == "status"
    assert (
        http.get("/api/executions?page_size=x").body["error"]["field_violations"][0]["field"] == "page_size"
    )

    detail = http.get(f"/api/executions/{ids[0]}").body
    assert [n["id"] for n in detail["graph"]][:2] == ["analyse", "generate_tasks"]
    assert detail["graph"][1]["depends_on"] == ["analyse"]
    fan_out = next(s for s in detail["execution"]["steps"] if s["children"])
    assert all(c["status"] == "completed" for c in fan_out["children"])
    step = detail["execution"]["steps"][0]
    coordination = http.get(f"/api/coordinations/{step['coordination_id']}").body["coordination"]
    assert "haiku number 0" in coordination["task"]
    missing = http.get("/api/executions/wfx_nope")
    assert missing.status == 404 and missing.body["error"]["reason"] == "EXECUTION_NOT_FOUND"
    assert http.get("/api/nothing").status == 404


def test_event_stream_resumes_after_last_event_id(console_server: VoltorchServer, http: Http) -> None:
    with voltorch.Client(console_server.target) as client:
        sent = [client.events.publish("probe.tick", {"n": i}, source="t") for i in range(4)]
        client.events.publish("other.tick", {}, source="t")
    assert console_server.console is not None
    url = console_server.console.url + "api/events/stream?types=probe.*"
    start = sent[0].sequence - 1
    first = read_sse(url, 2, {"Last-Event-ID": str(start)})
    assert [e["data"]["n"] for e in first] == [0, 1] and first[0]["sse_id"] == sent[0].sequence
    # Reconnect from the last id seen: the rest, nothing repeated, nothing lost.
    rest = read_sse(url, 2, {"Last-Event-ID": str(first[-1]["sse_id"])})
    assert [e["data"]["n"] for e in rest] == [2, 3]
    listed = http.get("/api/events?types=probe.*&page_size=3").body
    assert [e["data"]["n"] for e in listed["items"]] == [3, 2, 1] and listed["next_page_token"]
    assert listed["head_sequence"] >= sent[-1].sequence
    assert (
        http.get("/api/events?min_priority=urgent").body["error"]["field_violations"][0]["field"]
        == "min_priority"
    )
    bad = http.get("/api/events/stream", headers={"Last-Event-ID": "x"})
    assert bad.status == 400 and bad.body["error"]["field_violations"][0]["field"] == "Last-Event-ID"


def test_watch_stream_replays_the_run_and_ends_with_it(console_server: VoltorchServer) -> None:
    with voltorch.Client(console_server.target) as client:
        e = client.workflows.execute_complete("Plan a picnic").execution
        for _ in client.workflows.watch(e.id):
            pass
        # Read in one batch with the run's events, a later event of its correlation is not written.
        client.events.publish("note.after_the_run", {"n": 1}, correlation_id=e.id)
    assert console_server.console is not None
    req = urllib.request.Request(console_server.console.url + f"api/executions/{e.id}/stream")
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read().decode()  # the server ends the stream after the run's terminal event
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith('data: {"sequence"')]
    types = [ev["type"] for ev in events]
    assert "workflow.execution.started" in types and types[-1] == "workflow.execution.completed"
    assert "workflow.step.completed" in types and "note.after_the_run" not in types
    assert all(ev["correlation_id"] == e.id for ev in events)
    assert body.rstrip().endswith("event: end\ndata: {}")


def test_system_endpoints(console_server: VoltorchServer, http: Http) -> None:
    health = http.get("/api/health").body
    assert health["status"] == "HEALTHY"
    assert {c["name"] for c in health["components"]} >= {"events", "state", "coordination", "workflows"}
    console_server.runtime.watcher.collect_metrics()  # one history interval (RPCs of the SDK above)
    with voltorch.Client(console_server.target) as client:
        client.state.set("k", 1)
    console_server.runtime.watcher.collect_metrics()
    rpc = http.get("/api/metrics/rpc").body
    assert rpc["points"] and rpc["points"][-1]["rate"] > 0
    agents = http.get("/api/agents").body["items"]
    assert {"analyst", "coder"} <= {a["id"] for a in agents}
    assert http.get("/api/agents/history").status == 200
    assert http.get("/api/errors").body == {"items": [], "next_page_token": ""}


def test_roles_are_enforced_on_the_server(secured_server: VoltorchServer, gate_for) -> None:
    assert secured_server.console is not None
    http = Http(secured_server.console.url)
    assert http.get("/api/session").body == {"auth": True, "role": None}
    assert http.get("/api/session", token=READER).body == {"auth": True, "role": "reader"}
    denied = http.get("/api/executions")
    assert denied.status == 401 and denied.body["error"]["reason"] == "UNAUTHENTICATED"
    assert http.get("/api/executions", token="wrong-token-0123456789").status == 401
    with voltorch.Client(secured_server.target, token=ADMIN) as client:
        gate_for(client)
        e = client.workflows.start("gated-release").execution
    assert http.get(f"/api/executions/{e.id}", token=READER).status == 200
    for verb in ("pause", "resume", "cancel", "signal"):
        refused = http.post(f"/api/executions/{e.id}/{verb}", token=READER)
        assert refused.status == 403 and refused.body["error"]["reason"] == "PERMISSION_DENIED", verb
    assert http.post("/api/executions", {"requirement": "x"}, token=READER).status == 403
    assert http.post(f"/api/executions/{e.id}/cancel", token=AGENT).body["execution"]["status"] == "cancelled"
    # The same policy on gRPC: an agent token may now steer workflows there too.
    with voltorch.Client(secured_server.target, token=AGENT) as agent:
        assert agent.workflows.start("gated-release").execution.status in ("pending", "queued", "running")


def test_bad_bodies_are_refused_with_the_field(http: Http) -> None:
    missing = http.post("/api/executions", {"template_name": ""})
    assert missing.status == 400 and missing.body["error"]["field_violations"][0]["field"] == "template_name"
    not_json = urllib.request.Request(
        http.base + "/api/executions",
        data=b"[1,",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(not_json, timeout=10)
        raise AssertionError("a malformed body was accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400 and json.loads(err.read())["error"]["field_violations"][0]["field"] == "body"
    version = http.post("/api/executions", {"template_name": "x", "template_version": "two"})
    assert (
        version.status == 400 and version.body["error"]["field_violations"][0]["field"] == "template_version"
    )
    params = http.post("/api/executions", {"template_name": "x", "parameters": [1]})
    assert params.status == 400 and params.body["error"]["field_violations"][0]["field"] == "parameters"
    unknown = http.post("/api/executions/wfx_nope/signal", {"name": "approval"})
    assert unknown.status == 404, unknown.body
    for body, field in (
        ({"name": 7}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "ok", "sender": []}, "sender"),
    ):
        bad = http.post("/api/executions/wfx_nope/signal", body)
        assert bad.status == 400 and bad.body["error"]["field_violations"][0]["field"] == field, body


def test_unexpected_errors_are_500_with_an_id(
    console_server: VoltorchServer, http: Http, monkeypatch
) -> None:
    def boom(*a, **k):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(console_server.runtime.watcher, "health", boom)
    r = http.get("/api/health")
    assert r.status == 500 and "secret" not in json.dumps(r.body)
    assert r.body["error"]["metadata"]["error_id"].startswith("err")


def test_readme_shows_the_console_and_says_how_to_open_it() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert "![" in readme and "(docs/console.png)" in readme
    assert (root / "docs" / "console.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "--ui-port 8233" in readme and "UI_PORT ?= 8233" in (root / "Makefile").read_text()


def test_stopping_the_server_ends_open_event_streams(config: Config) -> None:
    srv = VoltorchServer(replace(config, ui_port=-1)).start()
    stopped = False
    try:
        assert srv.console is not None
        r = urllib.request.urlopen(srv.console.url + "api/events/stream", timeout=10)
        assert r.readline().startswith(b"retry:")  # the stream is open
        srv.stop(grace=1.0)
        stopped = True
        r.read()  # returns at EOF: the server ended the stream (bounded by the socket timeout)
    finally:
        if not stopped:
            srv.stop(grace=1.0)


def test_workflow_control_needs_json_from_the_same_origin(console_server: VoltorchServer, http: Http) -> None:
    """A cross-site page cannot steer workflows through a visitor's browser, even without tokens."""
    with voltorch.Client(console_server.target) as client:
        e = client.workflows.execute_complete("Draw a map").execution
    url = f"/api/executions/{e.id}/cancel"
    form = http.call("POST", url, body={}, headers={"Content-Type": "text/plain"})
    assert form.status == 400 and form.body["error"]["field_violations"][0]["field"] == "Content-Type"
    foreign = http.post(url, headers={"Origin": "http://evil.example"})
    assert foreign.status == 403
    same = http.post(url, headers={"Origin": http.base})
    assert same.status == 200 or same.body["error"]["reason"] == "EXECUTION_FINISHED"


def test_a_busy_console_port_is_a_clear_error(console_server: VoltorchServer, config: Config) -> None:
    assert console_server.console is not None
    taken = console_server.console.port
    try:
        VoltorchServer(replace(config, db=config.db + ".2", ui_port=taken))
        raise AssertionError("a second console bound a port in use")
    except StartupError as exc:
        assert f"could not bind the console on 127.0.0.1:{taken}" in str(exc)
    # The failed attempt released its database: a server on it starts.
    VoltorchServer(replace(config, db=config.db + ".2")).start().stop(grace=1.0)


def test_correlation_tree_with_an_id_that_needs_escaping(console_server: VoltorchServer, http: Http) -> None:
    with voltorch.Client(console_server.target) as client:
        root = client.events.publish("job.started", {}, source="t", correlation_id="run 7/a")
        client.events.publish("job.done", {}, source="t", correlation_id="run 7/a", causation_id=root.id)
    tree = http.get("/api/correlations/run%207%2Fa").body
    assert tree["root_ids"] == [root.id]
    assert [n["event"]["type"] for n in tree["nodes"]] == ["job.started", "job.done"]
    assert tree["nodes"][1]["parent_id"] == root.id and tree["nodes"][1]["depth"] == 1


def test_bad_and_unknown_query_parameters_are_400_naming_them(http: Http) -> None:
    for path, field in [
        ("/api/events?limit=abc", "limit"),  # not a parameter of the route: refused, not ignored
        ("/api/events?limit=-5", "limit"),
        ("/api/executions?page_size=-5", "page_size"),
        ("/api/errors?page_size=-1", "page_size"),
        ("/api/trace?trace_id=t&max_entries=-3", "max_entries"),
        ("/api/health?verbose=1", "verbose"),
    ]:
        bad = http.get(path)
        assert bad.status == 400, (path, bad)
        assert bad.body["error"]["field_violations"][0]["field"] == field, (path, bad.body)
    assert http.get("/api/events?page_size=5&types=a.*").status == 200


def test_unsupported_methods_are_a_json_405_with_allow(console_server: VoltorchServer) -> None:
    assert console_server.console is not None
    base = console_server.console.url.rstrip("/")
    for method, path, allow in [
        ("DELETE", "/api/executions", "GET, POST"),
        ("PUT", "/api/executions/wfx_1", "GET"),
        ("PATCH", "/api/health", "GET"),
        ("OPTIONS", "/api/events", "GET"),
        ("GET", "/api/executions/wfx_1/pause", "POST"),
        ("DELETE", "/index.html", "GET"),
    ]:
        req = urllib.request.Request(base + path, method=method, data=b"{}" if method != "GET" else None)
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError(f"{method} {path} was accepted")
        except urllib.error.HTTPError as err:
            assert err.code == 405, (method, path, err.code)
            assert err.headers["Allow"] == allow, (method, path, err.headers["Allow"])
            assert err.headers.get_content_type() == "application/json"
            assert method in json.loads(err.read())["error"]["message"]
