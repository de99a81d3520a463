"""The operator CLI commands against a real in-process server."""

from __future__ import annotations

from voltorch_server.cli import main


def run(capsys, server, *argv: str) -> tuple[int, str]:
    code = main([*argv, "--target", server.target])
    return code, capsys.readouterr().out


def test_state_set_get_and_list(capsys, server):
    assert run(capsys, server, "state", "set", "project.config", '{"maxRetries": 3}')[0] == 0
    code, out = run(capsys, server, "state", "get", "project.config")
    assert code == 0 and '"maxRetries": 3' in out
    assert "project.config = " in run(capsys, server, "state", "list", "project.")[1]


def test_missing_key_is_a_clear_error(capsys, server):
    assert main(["state", "get", "nope", "--target", server.target]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_events_lists_newest_first_with_filters(capsys, server, client):
    client.state.set("k", 1)
    code, out = run(capsys, server, "events", "--type", "state.*")
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all("state.changed" in line for line in lines)


def test_agents_health_metrics_and_errors(capsys, server, client):
    code, out = run(capsys, server, "agents")
    assert code == 0 and "analyst" in out and "offline" in out
    code, out = run(capsys, server, "health")
    assert "state" in out and "coordination" in out
    assert code in (0, 1)
    code, out = run(capsys, server, "metrics")
    assert code == 0 and "voltorch." in out
    assert run(capsys, server, "errors")[0] == 0  # no server-side failures recorded: an empty list


def test_errors_by_correlation_tells_the_story(capsys, server, client):
    client.events.publish("demo.started", {"n": 1}, correlation_id="corr-1")
    client.events.publish("demo.failed", {"n": 2}, correlation_id="corr-1")
    code, out = run(capsys, server, "errors", "--correlation", "corr-1")
    assert code == 0
    assert out.index("demo.started") < out.index("demo.failed")
