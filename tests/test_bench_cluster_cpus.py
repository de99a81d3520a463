"""review8: the bench's cluster suite gives its replicas one core each in turn (cpus.spread), but a
VOLTORCH_CPU_AFFINITY the user exported still reaches them, as every other VOLTORCH_* setting does
(bench/README.md: "VOLTORCH_* settings reach the server")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the bench package

from bench import suite_cluster  # noqa: E402


class _Recorded:
    def __init__(self, kind: str, db: str | None = None, env: dict[str, str] | None = None) -> None:
        self.env = env or {}
        self.target = "127.0.0.1:1"


@pytest.mark.parametrize("exported", ["all", "0"])
def test_an_exported_cpu_affinity_reaches_the_bench_replicas(
    monkeypatch: pytest.MonkeyPatch, exported: str
) -> None:
    monkeypatch.setenv("VOLTORCH_CPU_AFFINITY", exported)
    monkeypatch.setattr(suite_cluster, "ServerProcess", _Recorded)
    cluster = suite_cluster.Cluster("postgresql://unused", 2, None, env={"VOLTORCH_TRACING": "false"})
    for r in cluster.replicas:  # the harness starts the child with {**os.environ, **env}
        assert {**os.environ, **r.env}["VOLTORCH_CPU_AFFINITY"] == exported


def test_without_one_the_bench_replicas_get_one_core_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOLTORCH_CPU_AFFINITY", raising=False)
    monkeypatch.setattr(suite_cluster, "ServerProcess", _Recorded)
    cluster = suite_cluster.Cluster("postgresql://unused", 2, None)
    assert [r.env["VOLTORCH_CPU_AFFINITY"] for r in cluster.replicas] == [
        suite_cluster.cpus.spread(0),
        suite_cluster.cpus.spread(1),
    ]
