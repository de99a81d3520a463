"""voltorch_server.frozen: the hot paths' frozen dataclasses equal the constructor's."""

from __future__ import annotations

import dataclasses

import pytest
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
