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


@pytest.mark.parametrize("package", ["server/voltorch_server", "sdk/voltorch"])
def test_the_architecture_tree_names_every_top_level_module(package: str) -> None:
    """A newcomer finds any behaviour in one hop: each module and package of the server and the SDK is
    named in the README's Architecture tree."""
    text = README.read_text()
    tree = text[text.index("## Architecture") :]
    tree = tree[: tree.index("```", tree.index("```") + 3)]
    # the package's own branch: from its line to the next line at the root of the tree
    branch = re.search(rf"^{re.escape(package)}/.*?(?=^\S)", tree, flags=re.S | re.M)
    assert branch, package
    tree = branch[0]
    root = README.parent / package
    names = [
        p.name + ("/" if p.is_dir() else "")
        for p in root.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())
    ]
    unnamed = [n for n in sorted(names) if not re.search(rf"(?<![\w/]){re.escape(n)}", tree)]
    assert not unnamed, f"{package}: not in the README's Architecture tree: {unnamed}"
