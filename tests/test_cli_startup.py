"""`voltorch serve` start-up: one owner per database, and every start-up or configuration error is one
line naming the problem, exit 2, no traceback (issue 9, items 9 and 10)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import voltorch
from cli_process import cli, serve, stop

SECRET = "s3cret-token-value-0123456789"


def refused(result, *needles: str) -> str:
    """The process refused to start as it should: exit 2, one stderr line holding every needle."""
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_a_second_server_on_the_same_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    with serve(tmp_path, "--db", str(db)) as first:
        pid = first.proc.pid
        second = cli("serve", "--port", "0", "--db", str(db), timeout=30)
        err = refused(second, str(db), f"pid {pid}", first.target)
        assert "in use" in err
        with voltorch.Client(first.target, timeout=10) as c:  # the owner is unaffected
            assert c.state.set("still", "mine").kv.version == 1
        assert stop(first) == 0
    # Once the owner has stopped, the file is free again.
    with serve(tmp_path, "--db", str(db)) as again, voltorch.Client(again.target, timeout=10) as c:
        assert c.state.get("still").value == "mine"


def test_a_killed_owner_leaves_no_stale_lock(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    with serve(tmp_path, "--db", str(db)) as first:
        first.proc.kill()
        first.proc.wait(timeout=10)
    with serve(tmp_path, "--db", str(db)) as second:
        assert str(db) in second.banner


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), "--db", str(tmp_path / "p.db"))
    refused(result, f"port {port}", "in use")


def test_console_port_in_use_releases_the_database(tmp_path: Path) -> None:
    db = tmp_path / "ui.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", "0", "--ui-port", str(port), "--db", str(db))
    refused(result, "could not bind the console", f"127.0.0.1:{port}")
    with serve(tmp_path, "--db", str(db)) as s:  # the refused server gave the database back
        assert str(db) in s.banner


def test_ui_port_out_of_range_from_the_environment(tmp_path: Path) -> None:
    result = cli("serve", "--port", "0", "--db", str(tmp_path / "x.db"), env=_env(VOLTORCH_UI_PORT="70000"))
    refused(result, "ui_port", "70000", "65535")


def test_host_that_does_not_resolve(tmp_path: Path) -> None:
    result = cli("serve", "--port", "0", "--host", "no-such-host.invalid", "--db", str(tmp_path / "h.db"))
    refused(result, "no-such-host.invalid", "does not resolve")


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_port_out_of_range(tmp_path: Path, port: str) -> None:
    """A bad flag is a usage error, argparse style: the usage, then one error line naming the flag."""
    result = cli("serve", "--port", port, "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("voltorch serve: error: argument --port:") and port in last, last
    assert not (tmp_path / "x.db").exists()


def test_port_out_of_range_from_the_environment(tmp_path: Path) -> None:
    result = cli("serve", "--db", str(tmp_path / "x.db"), env=_env(VOLTORCH_PORT="70000"))
    refused(result, "port", "70000", "65535")


def test_db_that_is_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()
    err = refused(cli("serve", "--port", "0", "--db", str(folder)), str(folder))
    assert "is a directory" in err and "unable to open" not in err


def test_db_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("these are my notes, not a database\n" * 200)
    err = refused(cli("serve", "--port", "0", "--db", str(junk)), str(junk))
    assert "not a database" in err
    assert junk.read_text().startswith("these are my notes")  # untouched


def test_db_with_damaged_pages_is_refused(tmp_path: Path) -> None:
    """PRAGMA quick_check at start: damaged middle pages (the file still opens) refuse the start."""
    import sqlite3

    db = tmp_path / "damaged.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("CREATE INDEX filler_body ON filler (body)")
        conn.executemany(
            "INSERT INTO filler (body) VALUES (?)", [(f"row {i} " + "x" * 300,) for i in range(2000)]
        )
    conn.close()
    data = bytearray(db.read_bytes())
    middle = len(data) // 4096 // 2
    for n in range(middle, middle + 4):
        data[n * 4096 + 100 : n * 4096 + 1000] = b"\xff" * 900
    db.write_bytes(bytes(data))
    err = refused(cli("serve", "--port", "0", "--db", str(db), timeout=60), str(db), "is damaged")
    assert "voltorch db check" in err


def test_db_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    refused(cli("serve", "--port", "0", "--db", str(tmp_path / "file" / "v.db")), str(tmp_path / "file"))


def test_db_in_an_unwritable_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permissions; sysfs refuses new files even to root
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no unwritable directory to use")
        refused(cli("serve", "--port", "0", "--db", "/sys/voltorch-test.db"), "/sys/voltorch-test.db")
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(cli("serve", "--port", "0", "--db", str(locked / "v.db")), str(locked / "v.db"))
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "name, text, line",
    [
        ("bad.toml", 'port = 50051\nhost = "127.0.0.1\n', "line 2"),
        ("bad.json", '{\n  "port": 50051,\n  "host": \n}\n', "line 4"),
        # tomllib says only "(at end of document)": the message still names the last line
        ("eof.toml", "port = 50051\nhost = ", "line 2"),
        ("eof-newline.toml", 'port = 50051\nhost = "127.0.0.1"\ntags = [1,\n', "line 3"),
    ],
)
def test_config_file_that_does_not_parse(tmp_path: Path, name: str, text: str, line: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    refused(
        cli("serve", "--port", "0", "--config", str(path), "--db", str(tmp_path / "c.db")), str(path), line
    )


def test_config_file_with_an_unknown_setting(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text("prot = 1\n")
    refused(cli("serve", "--config", str(path), "--db", str(tmp_path / "c.db")), str(path), "prot")


def test_missing_config_file(tmp_path: Path) -> None:
    refused(cli("serve", "--config", str(tmp_path / "nope.toml")), "nope.toml")


@pytest.mark.parametrize(
    "tokens, needle",
    [
        (SECRET, "role:token"),  # no role at all
        (f"boss:{SECRET}", "unknown role"),
        (f"{SECRET}:admin", "unknown role"),  # reversed: the token sits where the role goes
        ("admin:short-secret", "at least 16"),
    ],
)
def test_bad_auth_tokens_never_echo_the_token(tmp_path: Path, tokens: str, needle: str) -> None:
    result = cli(
        "serve", "--port", "0", "--db", str(tmp_path / "t.db"), env=_env(VOLTORCH_AUTH_TOKENS=tokens)
    )
    err = refused(result, "auth_tokens", needle)
    for secret in (SECRET, "short-secret"):
        assert secret not in err and secret not in result.stdout


def test_bad_auth_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"' + SECRET + '": "root"}')
    result = cli(
        "serve", "--port", "0", "--db", str(tmp_path / "t.db"), env=_env(VOLTORCH_AUTH_TOKENS_FILE=str(path))
    )
    err = refused(result, str(path), "unknown role")
    assert SECRET not in err


def test_auth_tokens_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(b'{"\xff\xfe": "admin"}')
    result = cli(
        "serve", "--port", "0", "--db", str(tmp_path / "t.db"), env=_env(VOLTORCH_AUTH_TOKENS_FILE=str(path))
    )
    refused(result, str(path), "not UTF-8")


def _env(**extra: str) -> dict[str, str]:
    from cli_process import clean_env

    return clean_env(**extra)
