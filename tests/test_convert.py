"""Times and JSON paths shared by the SDK and the server."""

from __future__ import annotations

import random

import pytest
from voltorch.wire import from_timestamp as ts_to_float
from voltorch.wire import to_datetime, to_timestamp
from voltorch.wire import to_timestamp as ts
from voltorch_server.components import PathError, parse_path, resolve


def test_a_server_time_comes_back_unchanged_through_the_sdk() -> None:
    """created_after=<an execution's create_time> must include that execution: server float ->
    Timestamp -> SDK datetime -> Timestamp -> server float is exact to the microsecond."""
    rng = random.Random(7)
    for _ in range(20_000):
        t = round(1.7e9 + rng.random() * 1e8, 6)
        assert ts_to_float(to_timestamp(to_datetime(ts(t)))) == t
    assert ts(1.9999999999).seconds == 2 and ts(-1.5).nanos == 500_000_000


@pytest.mark.parametrize(
    ("path", "parts"),
    [("", []), ("a.b[0].c", ["a", "b", 0, "c"]), ("[1][0]", [1, 0]), ("a.[2]", ["a", 2])],
)
def test_paths(path: str, parts: list) -> None:
    assert parse_path(path) == parts


@pytest.mark.parametrize("path", ["a.", ".a", "a..b", "a[x]", "a[0]b"])
def test_malformed_paths(path: str) -> None:
    with pytest.raises(PathError):
        parse_path(path)


def test_resolve() -> None:
    doc = {"a": {"b": [{"c": 1}, None]}}
    assert resolve(doc, "a.b[0].c") == (True, 1)
    assert resolve(doc, "a.b[1]") == (True, None)
    assert resolve(doc, "a.b[2]") == (False, None) and resolve(doc, "a.x") == (False, None)
