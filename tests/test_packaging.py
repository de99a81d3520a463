"""`pip install voltorch` is the SDK alone: the wheel installed without extras into a fresh venv pulls
grpcio, protobuf and grpcio-status (and what they need), drives a running server, and has none of the
server's dependencies. Also: the version is written once (pyproject.toml).

The wheel is built by pip (build isolation: setuptools from the package index) and installed with its
declared dependencies resolved by pip, so the dependency metadata itself is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import voltorch
import voltorch_server
from voltorch_server.app import VoltorchServer

ROOT = Path(__file__).resolve().parents[1]
# Top-level modules of the server's (and the CLI's) dependencies: none may come with the bare SDK.
SERVER_ONLY = [
    "openai",
    "opentelemetry",
    "psutil",
    "rich",
    "sqlite_utils",
    "grpc_health",
    "grpc_reflection",
    "prometheus_client",
]
SDK_DISTRIBUTIONS = {"voltorch", "grpcio", "protobuf", "grpcio-status", "googleapis-common-protos"}


def _run(*cmd: str | Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, ROOT)
    (built,) = dist.glob("voltorch-*.whl")
    return built


def _venv_with(tmp: Path, requirement: str) -> Path:
    """The python of a fresh venv with `requirement` (the wheel, perhaps with extras) installed."""
    _run(sys.executable, "-m", "venv", tmp / "venv", timeout=120)
    python = tmp / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement)
    return python


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """The python of a fresh venv with only the voltorch wheel (no extras) installed."""
    return _venv_with(tmp_path_factory.mktemp("sdk"), str(wheel))


@pytest.fixture(scope="module")
def cli_python(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """The python of a fresh venv with `voltorch[cli]` installed from the wheel."""
    return _venv_with(tmp_path_factory.mktemp("cli"), f"{wheel}[cli]")


def _absent(python: Path, modules: list[str]) -> dict[str, bool]:
    probe = "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is None for m in %r}))"
    return json.loads(_run(python, "-c", probe % modules).stdout)


def test_the_bare_install_has_only_the_sdk_dependencies(sdk_python: Path) -> None:
    listed = _run(sdk_python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    assert installed - {"pip", "setuptools", "typing-extensions"} == SDK_DISTRIBUTIONS
    assert _absent(sdk_python, SERVER_ONLY) == dict.fromkeys(SERVER_ONLY, True)


def test_the_bare_sdk_drives_a_running_server(sdk_python: Path, server: VoltorchServer) -> None:
    script = f"""
import sys, voltorch
assert "opentelemetry" not in sys.modules and "openai" not in sys.modules
with voltorch.Client({server.target!r}) as c:
    c.state.set("packaging/k", {{"n": 1}})
    assert c.state.get("packaging/k").value == {{"n": 1}}
    published = c.events.publish("packaging.test", data={{"ok": True}})
    assert [e.id for e in c.events.list("packaging.test")] == [published.id]
    assert c.orchestrator.health().status == "HEALTHY"
print(voltorch.__version__)
"""
    out = _run(sdk_python, "-c", script, timeout=60)
    assert out.stdout.strip() == version("voltorch")


def test_serve_without_the_server_extra_says_what_to_install(sdk_python: Path) -> None:
    out = _run(sdk_python.parent / "voltorch", "serve", "--port", "0", timeout=60, check=False)
    assert out.returncode == 2
    assert "pip install 'voltorch[server]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_cli_extra_is_enough_for_the_client_commands(cli_python: Path, server: VoltorchServer) -> None:
    server_only = [m for m in SERVER_ONLY if m != "rich"]
    assert _absent(cli_python, server_only) == dict.fromkeys(server_only, True)
    voltorch_cmd = cli_python.parent / "voltorch"
    _run(voltorch_cmd, "state", "set", "cli/k", '{"n": 2}', "--target", server.target, timeout=60)
    got = _run(voltorch_cmd, "state", "get", "cli/k", "--target", server.target, timeout=60)
    assert json.loads(got.stdout)["value"] == {"n": 2}
    health = _run(voltorch_cmd, "health", "--target", server.target, timeout=60)
    assert "HEALTHY" in health.stdout and "state" in health.stdout
    serve = _run(voltorch_cmd, "serve", "--port", "0", timeout=60, check=False)
    assert serve.returncode == 2 and "pip install 'voltorch[server]'" in serve.stderr


def test_the_version_is_written_once() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert voltorch.__version__ == voltorch_server.__version__ == version("voltorch") == declared
