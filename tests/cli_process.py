"""Run `voltorch` as a real process: `serve(...)` a server, `cli(...)` one client command."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "voltorch_server.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without VOLTORCH_* (a developer's settings must not leak in), no LLM key."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOLTORCH_") and k != "OPENAI_API_KEY"}
    return {**base, "PYTHONUNBUFFERED": "1", **extra}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None):
    """One `voltorch ...` command; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env or clean_env(), cwd=cwd
    )


LISTENING = re.compile(r"voltorch listening on (\S+):(\d+)")


class Serve:
    """A running `voltorch serve` subprocess and the address it printed."""

    def __init__(self, proc: subprocess.Popen, lines: queue.Queue, target: str, banner: str, stderr: Path):
        self.proc = proc
        self.lines = lines
        self.target = target
        self.banner = banner
        self.stderr = stderr


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Serve]:
    stderr = open(tmp_path / "serve.stderr", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "voltorch_server.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=clean_env(**(env or {})),
        cwd=tmp_path,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail("voltorch serve printed no 'listening' line within 30 s")
            if line is None:
                pytest.fail(f"voltorch serve exited early: {(tmp_path / 'serve.stderr').read_text()}")
            match = LISTENING.search(line)
            if match:
                break
        yield Serve(proc, lines, f"{match.group(1)}:{match.group(2)}", line, tmp_path / "serve.stderr")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        stderr.close()


def stop(s: Serve) -> int:
    s.proc.send_signal(signal.SIGTERM)
    try:
        return s.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        printed = []
        while not s.lines.empty():
            printed.append(s.lines.get_nowait())
        pytest.fail(
            f"no exit 15 s after SIGTERM; stdout after the banner: {printed}; "
            f"stderr: {s.stderr.read_text()[-2000:]}"
        )
