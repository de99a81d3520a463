"""`voltorch state ...` and the global CLI flags, as subprocesses against a real server (issue 9, items
11, 12 and 15)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading

import pytest
from cli_process import CLI, clean_env, cli
from voltorch_server.cli import build_parser

KV_KEYS = ["key", "value", "version", "create_revision", "mod_revision", "expire_time", "update_time"]


def ok(result) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def test_global_flags_before_or_after_the_command(server, client):
    client.state.set("flags.k", {"n": 1})
    before = ok(cli("-o", "json", "--target", server.target, "state", "get", "flags.k"))
    after = ok(cli("state", "get", "flags.k", "-o", "json", "--target", server.target))
    assert json.loads(before) == json.loads(after)
    assert list(json.loads(before)) == KV_KEYS
    # VOLTORCH_TARGET is the default target
    from_env = ok(cli("-o", "json", "state", "get", "flags.k", env=clean_env(VOLTORCH_TARGET=server.target)))
    assert json.loads(from_env)["value"] == {"n": 1}


def test_json_jsonl_and_piped_default(server, client):
    client.state.set("fmt.a", [1, "x"])
    client.state.set("fmt.b", {"deep": {"er": True}})
    doc = json.loads(ok(cli("state", "list", "fmt.", "-o", "json", "--target", server.target)))
    assert [kv["key"] for kv in doc] == ["fmt.a", "fmt.b"]
    assert doc[0]["value"] == [1, "x"] and doc[1]["value"] == {"deep": {"er": True}}  # values stay JSON
    assert all(list(kv) == KV_KEYS for kv in doc)
    lines = ok(cli("state", "list", "fmt.", "-o", "jsonl", "--target", server.target)).splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["fmt.a", "fmt.b"]
    # Not a terminal and no -o: no table drawing, one JSON object per line.
    piped = ok(cli("state", "list", "fmt.", "--target", server.target))
    assert piped.splitlines() == lines
    table = ok(cli("state", "list", "fmt.", "-o", "table", "--target", server.target))
    assert "fmt.a" in table and "┃" in table


def test_every_command_takes_output(server):
    for args in (
        ["agents"],
        ["health"],
        ["metrics", "voltorch.workflows.*"],
        ["errors"],
        ["workflows", "list"],
    ):
        out = cli(*args, "-o", "json", "--target", server.target)
        assert out.returncode in (0, 1) and "Traceback" not in out.stderr, (args, out.stderr)
        json.loads(out.stdout)  # one JSON document
    agents = json.loads(ok(cli("agents", "-o", "json", "--target", server.target)))
    assert {"id", "kind", "capabilities"} <= set(agents[0])


def test_version_and_help():
    version = ok(cli("--version"))
    assert version.startswith("voltorch ") and version.split()[1][0].isdigit()
    top = ok(cli("--help"))
    for var in ("VOLTORCH_TARGET", "VOLTORCH_TOKEN", "VOLTORCH_DB", "VOLTORCH_PORT"):
        assert var in top
    serve = " ".join(ok(cli("serve", "--help")).split())
    assert "default: $VOLTORCH_HOST, else 127.0.0.1" in serve
    assert "default: $VOLTORCH_PORT, else 50051" in serve


def _parsers(parser):
    yield parser
    for action in parser._actions:  # argparse has no public walk over subparsers
        if action.choices and isinstance(action.choices, dict):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_flag_has_help_and_says_its_default():
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.help == "==SUPPRESS==" or action.dest in ("help", "version"):
                continue
            if isinstance(action.choices, dict):  # the subcommands themselves: each has its own help
                continue
            where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, where
            meaningful = action.default not in (None, False, "", [], "==SUPPRESS==")
            if action.option_strings and meaningful:
                assert "default" in action.help, where


def test_state_get_print_value_only_and_list_keys_only(server, client):
    client.state.set("p.one", {"a": 1})
    client.state.set("p.two", "text")
    assert json.loads(ok(cli("state", "get", "p.one", "--print-value-only", "--target", server.target))) == {
        "a": 1
    }
    assert ok(cli("state", "get", "p.two", "--print-value-only", "--target", server.target)) == '"text"\n'
    keys = ok(cli("state", "list", "p.", "--keys-only", "-o", "table", "--target", server.target))
    assert keys.splitlines() == ["p.one", "p.two"]
    # piped (the default format is jsonl there): still the bare keys, as the help says, like the value of
    # `get --print-value-only`; JSON only when -o json/jsonl is asked for
    piped = ok(cli("state", "list", "p.", "--keys-only", "--target", server.target))
    assert piped.splitlines() == ["p.one", "p.two"]
    lines = ok(cli("state", "list", "p.", "--keys-only", "-o", "jsonl", "--target", server.target))
    assert [json.loads(line) for line in lines.splitlines()] == [{"key": "p.one"}, {"key": "p.two"}]


def test_state_set_with_ttl_and_expected_version(server, client):
    t = ("--target", server.target)
    first = json.loads(
        ok(cli("state", "set", "cas", '{"v": 1}', "--expected-version", "0", "-o", "json", *t))
    )
    assert first["kv"]["version"] == 1
    lost = cli("state", "set", "cas", '{"v": 2}', "--expected-version", "0", *t)
    assert lost.returncode == 1 and "version" in lost.stderr.lower() and "Traceback" not in lost.stderr
    ok(cli("state", "set", "cas", '{"v": 2}', "--expected-version", "1", *t))
    assert client.state.get("cas").value == {"v": 2}
    ok(cli("state", "set", "ttl.k", "1", "--ttl", "3600", *t))
    assert client.state.get("ttl.k").expire_time is not None


def test_state_set_of_text_that_is_not_json_says_how_to_store_a_string(server, client):
    result = cli("state", "set", "s", "hello world", "--target", server.target)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not valid JSON" in result.stderr and "'\"hello world\"'" in result.stderr
    with pytest.raises(Exception, match="not found"):
        client.state.get("s")  # nothing was written
    ok(cli("state", "set", "s", '"hello world"', "--target", server.target))
    assert client.state.get("s").value == "hello world"


def test_state_delete_history_and_snapshots(server, client):
    t = ("--target", server.target)
    client.state.set("h.k", 1)
    client.state.set("h.k", 2)
    history = json.loads(ok(cli("state", "history", "h.k", "-o", "json", *t)))
    assert [c["kv"]["value"] for c in history] == [2, 1]
    snap = json.loads(ok(cli("state", "snapshot", "save", "--prefix", "h.", "-o", "json", *t)))
    assert snap["key_count"] == 1
    deleted = json.loads(ok(cli("state", "delete", "h.k", "-o", "json", *t)))
    assert deleted["key"] == "h.k" and deleted["revision"] > 0
    assert cli("state", "get", "h.k", *t).returncode == 1
    listed = [json.loads(line)["id"] for line in ok(cli("state", "snapshot", "list", *t)).splitlines()]
    assert snap["id"] in listed
    restored = json.loads(ok(cli("state", "snapshot", "restore", snap["id"], "-o", "json", *t)))
    assert restored["keys_restored"] == 1
    assert client.state.get("h.k").value == 2


def test_state_watch_prefix_from_revision(server, client):
    first = client.state.set("w.a", 1).revision
    client.state.set("other", 0)
    proc = subprocess.Popen(
        [*CLI, "state", "watch", "--prefix", "w.", "--from-revision", str(first), "--target", server.target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    lines: queue.Queue = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
    try:
        assert json.loads(lines.get(timeout=30))["kv"]["value"] == 1  # replayed from --from-revision
        client.state.set("w.b", 2)  # live
        client.state.delete("w.a")
        second, third = json.loads(lines.get(timeout=30)), json.loads(lines.get(timeout=30))
        assert (second["key"], second["type"]) == ("w.b", "put")
        assert (third["key"], third["type"]) == ("w.a", "delete")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    usage = cli("state", "watch", "--target", server.target)
    assert usage.returncode == 2 and "KEY or --prefix" in usage.stderr


def test_bad_arguments_get_argparse_errors_listing_valid_values(server):
    bogus = cli("workflows", "list", "--status", "bogus", "--target", server.target)
    assert bogus.returncode == 2 and "Traceback" not in bogus.stderr
    assert "invalid choice: 'bogus'" in bogus.stderr
    for status in ("running", "completed", "failed", "cancelled"):
        assert status in bogus.stderr
    missing = cli("state", "set", "key", "--target", server.target)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "usage: voltorch state set" in missing.stderr and "value" in missing.stderr.splitlines()[-1]


def test_piped_into_head_exits_quietly(server, client):
    client.events.publish_batch([_event(i) for i in range(400)])
    proc = subprocess.Popen(
        [*CLI, "events", "--limit", "400", "-o", "jsonl", "--target", server.target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())  # what `head -1` reads, then it goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 0, err
    assert err == "", err


def _event(i: int):
    from voltorch import NewEvent

    return NewEvent("bulk.item", {"i": i, "padding": "x" * 400})
