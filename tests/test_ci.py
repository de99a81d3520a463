"""`.ci/run` installs the Debian packages a clean CI machine lacks before `make lint` needs them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISSING = ROOT / ".ci" / "missing-packages"


def _missing(path: Path) -> list[str]:
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run(
        [bash, str(MISSING)], env={"PATH": str(path)}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_node_and_npm_are_installed_when_missing(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    assert {"nodejs", "npm"} <= set(_missing(bare))  # a PATH without node: both Debian packages
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("node", "npm"):
        (tools / name).write_text("#!/bin/sh\n")
        (tools / name).chmod(0o755)
    assert not {"nodejs", "npm"} & set(_missing(tools))


def test_ci_run_installs_what_is_missing_before_make_lint() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    install = script.index("apt-get install")
    assert ".ci/missing-packages" in script[:install]
    assert install < script.index("\nmake lint\n") < script.index("\nmake test\n")


def test_postgresql_is_not_installed_when_its_server_binaries_are_there(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "initdb").write_text("#!/bin/sh\n")
    (tools / "initdb").chmod(0o755)
    assert "postgresql" not in _missing(tools)
