"""voltorch_server.frozen: the hot paths' frozen dataclasses equal the constructor's."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pathlib

import pytest
import voltorch_server
from voltorch_server.frozen import blank, made, replaced


@dataclasses.dataclass(frozen=True)
class _Point:
    x: int
    y: int = 0
    label: str = ""


def test_made_is_the_constructors_object() -> None:
    p = made(_Point, x=1, y=2, label="a")
    assert p == _Point(1, 2, "a") and repr(p) == repr(_Point(1, 2, "a"))
    assert list(vars(p)) == [f.name for f in dataclasses.fields(_Point)]
    assert hash(p) == hash(_Point(1, 2, "a"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3  # type: ignore[misc]


def test_replaced_is_dataclasses_replace_and_leaves_the_original() -> None:
    p = _Point(1, 2, "a")
    q = replaced(p, label="b")
    assert q == dataclasses.replace(p, label="b") and p == _Point(1, 2, "a")
    assert list(vars(q)) == list(vars(p))


def test_blank_is_filled_by_its_caller() -> None:
    p = blank(_Point)
    vars(p).update(x=5, y=6, label="c")
    assert p == _Point(5, 6, "c")


def _made_calls() -> list[tuple[str, int, str, list[str]]]:
    """(module, line, class name, keywords in order) of every `made(Class, ...)` call in the server."""
    root = pathlib.Path(voltorch_server.__file__).parent
    calls = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("voltorch_server", *path.relative_to(root).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "made":
                assert isinstance(node.args[0], ast.Name), f"{module}:{node.lineno}: made() of a named class"
                calls.append((module, node.lineno, node.args[0].id, [k.arg or "**" for k in node.keywords]))
    return calls


def test_every_made_call_in_the_server_gives_every_field_in_the_classs_order() -> None:
    """A field added to a class the hot paths make with made() must be added there too: the object would
    otherwise lack it (AttributeError on read, wrong equality and repr)."""
    lazy = {("Event", "_data_json"): "data"}  # the event log's events decode their data on first read
    calls = _made_calls()
    assert len(calls) >= 20  # the scan finds the hot paths' calls
    wrong = []
    for module, line, name, keywords in calls:
        cls = getattr(importlib.import_module(module), name)
        expected = [f.name for f in dataclasses.fields(cls) if f.init]
        keywords = [lazy.get((name, k), k) for k in keywords]
        if keywords != expected:
            wrong.append(f"{module}:{line}: made({name}, {keywords}) but its fields are {expected}")
    assert not wrong, "\n".join(wrong)
