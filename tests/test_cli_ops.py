"""The operator commands as subprocesses against a real server: events (list, --follow through a server
restart), agents, health, metrics, errors (issue 9, item 14)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import voltorch
from cli_process import CLI, clean_env, cli, serve, stop


def ok(result) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def test_state_set_get_and_list_as_tables(server):
    t = ("--target", server.target, "-o", "table")
    ok(cli("state", "set", "project.config", '{"maxRetries": 3}', *t))
    assert '"maxRetries": 3' in ok(cli("state", "get", "project.config", *t))
    assert "project.config" in ok(cli("state", "list", "project.", *t))


def test_missing_key_is_a_clear_error(server):
    result = cli("state", "get", "nope", "--target", server.target)
    assert result.returncode == 1 and "NOT_FOUND" in result.stderr and "Traceback" not in result.stderr


def test_events_list_has_a_header_and_hides_the_periodic_events(server, client):
    client.state.set("k", 1)
    client.events.publish("component.health.checked", {"component": "state"})
    client.events.publish("system.metrics.collected", {})
    lines = ok(cli("events", "-o", "table", "--target", server.target)).splitlines()
    assert lines[0].split()[:4] == ["SEQUENCE", "TIME", "TYPE", "SOURCE"]
    assert any("state.changed" in line for line in lines)
    assert not any("component.health.checked" in line or "system.metrics.collected" in line for line in lines)
    everything = ok(cli("events", "--all", "-o", "table", "--target", server.target))
    assert "component.health.checked" in everything and "system.metrics.collected" in everything
    asked = ok(cli("events", "--type", "system.*", "-o", "table", "--target", server.target))
    assert "system.metrics.collected" in asked  # asked for by type: shown
    only = ok(cli("events", "--type", "state.*", "-o", "table", "--target", server.target)).splitlines()[1:]
    assert only and all("state.changed" in line for line in only)


def test_events_follow_says_reconnecting_and_resumed_across_a_server_restart(tmp_path: Path):
    db = tmp_path / "follow.db"
    with serve(tmp_path, "--db", str(db)) as first:
        port = first.target.rsplit(":", 1)[1]
        follower = subprocess.Popen(
            [*CLI, "events", "--follow", "--type", "demo.*", "-o", "table", "--target", first.target],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        lines: queue.Queue = queue.Queue()
        stdout = follower.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()

        def next_line() -> str:
            return lines.get(timeout=30)

        try:
            assert next_line().split()[0] == "SEQUENCE"  # the header row comes first, before any event
            with voltorch.Client(first.target, timeout=10) as c:
                # The follower subscribes "from now": publish until one arrives (bounded).
                seen = ""
                for i in range(50):
                    c.events.publish("demo.before", {"i": i})
                    try:
                        seen = lines.get(timeout=0.5)  # bounded
                        break
                    except queue.Empty:
                        continue
            assert "demo.before" in seen, seen
            assert stop(first) == 0
            while "reconnecting" not in (line := next_line()):
                assert "demo.before" in line, line  # only the rest of the burst, nothing else
            with serve(tmp_path, "--db", str(db), "--port", port) as second:
                resumed = next_line()
                assert resumed.startswith("resumed at "), resumed
                with voltorch.Client(second.target, timeout=10) as c:
                    published = c.events.publish("demo.after", {"n": 1})
                while True:
                    line = next_line()
                    if "demo.after" in line:
                        break
                assert line.split()[0] == str(published.sequence)
                assert int(resumed.split()[-1]) <= published.sequence
                stop(second)
        finally:
            follower.kill()
            follower.wait(timeout=10)
        assert follower.stderr is not None
        assert "Traceback" not in follower.stderr.read()


def test_agents_health_metrics_and_errors(server, client):
    t = ("--target", server.target, "-o", "table")
    out = ok(cli("agents", *t))
    assert "analyst" in out and "offline" in out
    health = cli("health", *t)
    assert health.returncode in (0, 1) and "state" in health.stdout and "coordination" in health.stdout
    assert "voltorch." in ok(cli("metrics", *t))
    assert json.loads(ok(cli("errors", "--target", server.target, "-o", "json"))) == []


def test_errors_by_correlation_tells_the_story(server, client):
    client.events.publish("demo.started", {"n": 1}, correlation_id="corr-1")
    client.events.publish("demo.failed", {"n": 2}, correlation_id="corr-1")
    out = ok(cli("errors", "--correlation", "corr-1", "-o", "table", "--target", server.target))
    assert out.index("demo.started") < out.index("demo.failed")


def test_events_follow_prints_its_header_at_once(server):
    """Following a quiet stream shows the header row straight away, not when the first event comes."""
    follower = subprocess.Popen(
        [*CLI, "events", "--follow", "--type", "quiet.*", "-o", "table", "--target", server.target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    lines: queue.Queue = queue.Queue()
    stdout = follower.stdout
    assert stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
    try:
        assert lines.get(timeout=30).split()[:4] == ["SEQUENCE", "TIME", "TYPE", "SOURCE"]
    finally:
        follower.kill()
        follower.wait(timeout=10)
