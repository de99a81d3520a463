"""Node.js parts of the suite (the Node example, buf): found where `make test` installs them, or skipped.

`make test` runs `npm ci` from the committed package-lock.json files when node is on PATH. Without node
a test skips with the reason in the summary; under CI=true (`.ci/run`) it fails instead, so CI never
passes without having run them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_EXAMPLE = ROOT / "examples" / "node"
BUF_TOOLS = ROOT / "tools" / "buf"


def _missing(what: str) -> NoReturn:
    message = f"NOT RUN: {what}. Install Node.js >= 18 and run `make test` (it runs `npm ci`)."
    if os.environ.get("CI") == "true":
        pytest.fail(message + " CI=true: the Node.js tests are required here.")
    pytest.skip(message)


def node() -> str:
    """The node executable, with the example's npm packages installed."""
    found = shutil.which("node")
    if found is None:
        _missing("node is not on PATH")
    if not (NODE_EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        _missing(f"the npm packages of {NODE_EXAMPLE.relative_to(ROOT)} are not installed")
    return found


def buf() -> Path:
    """The buf binary from the @bufbuild/buf npm package."""
    exe = BUF_TOOLS / "node_modules" / ".bin" / "buf"
    if not exe.exists():
        _missing(f"buf is not installed in {BUF_TOOLS.relative_to(ROOT)}/node_modules")
    return exe
