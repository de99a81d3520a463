"""A real server process for crash tests: `voltorch serve` on 127.0.0.1:0, killed with SIGKILL by the test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def serve(db: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `voltorch serve` on db; returns the process and its target once it listens."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voltorch_server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--db",
            str(db),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # "voltorch listening on 127.0.0.1:PORT (db ...)"
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r}\n{log.read_text()}")
    return proc, m.group(1)
