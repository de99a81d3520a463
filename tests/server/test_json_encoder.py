"""`json_encoders.encoder`: the encoders made once give what `json.JSONEncoder(...).encode` gives, errors included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from voltorch_server.json_encoders import encoder, indented

VALUES: list[Any] = [
    None,
    True,
    0,
    2**70,
    -1.5,
    -0.0,
    1e300,
    float("nan"),
    float("inf"),
    "",
    'é中\n"\\\u2028\x00',
    [1, "a", {"b": None}, []],
    (1, 2),
    {"z": 1, "a": [1.25, True, False], "é": {"x": {}}},
    {1: 2, 2.5: "x", False: 1, None: 0},
    {"deep": [[[[[[{"k": [1]}]]]]]]},
    object(),  # not JSON: TypeError (or str() with default=str)
    {("tuple", "key"): 1},  # a key JSON cannot have: TypeError
]
OPTIONS: list[dict[str, Any]] = [
    {},
    {"separators": (",", ":")},
    {"separators": (",", ":"), "allow_nan": False, "ensure_ascii": False},
    {"separators": (",", ":"), "allow_nan": False},
    {"sort_keys": True, "default": str},
    {"separators": (",", ":"), "ensure_ascii": False},
]


def _outcome(fn: Any, value: Any) -> Any:
    try:
        return fn(value)
    except Exception as exc:  # the same exception type (the message of a default=str call may differ)
        return type(exc)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_the_same_text_and_errors_as_the_standard_encoder(options: dict[str, Any]) -> None:
    made, std = encoder(**options), json.JSONEncoder(**options).encode
    for value in VALUES:
        expected = _outcome(std, value)
        got = _outcome(made, value)
        if isinstance(expected, str) and "object at 0x" in expected:  # default=str of an object(): its repr
            assert isinstance(got, str) and got.startswith('"<object object at 0x')
            continue
        assert got == expected, value


def test_a_circular_structure_is_a_value_error_and_the_encoder_still_works() -> None:
    made = encoder(separators=(",", ":"))
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        made(loop)
    shared = {"a": 1}
    assert made([shared, shared]) == '[{"a":1},{"a":1}]'  # the same object twice is not a cycle


class _Str(str):
    pass


INDENTED: list[Any] = [
    *VALUES,
    -float("inf"),
    {"a": {}, "b": [], "c": [{}], "d": [[1, [2, {"e": "é\n"}]]]},
    {"sub": _Str("x")},  # a subclass: left to json.dumps
    [{"k": (1, 2)}],  # a tuple inside: left to json.dumps
    {"t": 1, 2: "non-str key"},
]


def test_indented_is_json_dumps_with_indent_2_text_and_errors() -> None:
    for value in INDENTED:
        assert _outcome(indented, value) == _outcome(lambda v: json.dumps(v, indent=2), value), value
    cycle: list[Any] = []
    cycle.append({"c": cycle})
    with pytest.raises(ValueError, match="Circular"):
        indented(cycle)
