"""examples/approval.py and examples/schedule.py run against a real server (each decision of the
approval example; the schedule example's interval ticks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=90
    )


@pytest.mark.parametrize(
    ("decision", "published"), [("approve", "completed"), ("reject", "skipped"), ("edit", "completed")]
)
def test_the_approval_example(server, decision, published):
    done = run("approval.py", "--target", server.target, "--decision", decision, "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert "waiting for approval on step 'review': Publish these release notes?" in done.stdout
    assert "by alice" in done.stdout and f"publish: {published}" in done.stdout
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last == {"status": "completed", "approved": decision != "reject"}


def test_the_schedule_example(server, client):
    done = run("schedule.py", "--target", server.target, "--ticks", "2", "--interval", "1")
    assert done.returncode == 0, done.stderr + done.stdout
    ticks = [line for line in done.stdout.splitlines() if line.startswith("tick execution")]
    assert len(ticks) >= 2 and all("schedule/" in line for line in ticks)
    assert "cron 30 7 * * 1-5 (Europe/Paris)" in done.stdout and "triggered by hand" in done.stdout
    assert list(client.schedules.list()) == []
