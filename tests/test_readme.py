"""The README's Python examples run against a real server, so the README stays true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from voltorch_server.config import Config

README = Path(__file__).resolve().parents[1] / "README.md"
# The README's examples talk to a server at the default address; the test points them at its own server.
DEFAULT_TARGET = f"{Config().host}:{Config().port}"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, server, capsys):
    code = BLOCKS[index].replace(DEFAULT_TARGET, server.target)
    exec(compile(code, f"README.md example {index + 1}", "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out.strip(), "every example prints what it shows"
