"""JSON encoders made once, for the hot paths that encode small values many times (a workflow step encodes
~20: its events' data, the coordination's row, the step rows).

`json.JSONEncoder(...).encode` builds a new C encoder (and a Python closure) on every call, ~1.5 µs before
any encoding; `encoder()` builds the C encoder once and calls it. The output is `JSONEncoder(**options)
.encode`'s, character for character. What differs is how a circular structure is caught: the shared C
encoder keeps no markers (one markers dict shared by threads would see another thread's containers), so
recursion runs deep; that RecursionError is answered by the standard encoder, which raises its ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _std
from typing import Any


def encoder(**options: Any) -> Callable[[Any], str]:
    """`json.JSONEncoder(**options).encode`, without its per-call set-up (see the module's docstring)."""
    std = json.JSONEncoder(**options)
    make = getattr(_std, "c_make_encoder", None)
    if make is None or std.indent is not None:  # no C accelerator here: the standard one
        return std.encode
    c_encode = make(
        None,  # no markers: see the module's docstring
        std.default,
        _std.encode_basestring_ascii if std.ensure_ascii else _std.encode_basestring,
        None,
        std.key_separator,
        std.item_separator,
        std.sort_keys,
        std.skipkeys,
        std.allow_nan,
    )
    join = "".join

    def encode(o: Any) -> str:
        try:
            return join(c_encode(o, 0))
        except RecursionError:
            return std.encode(o)  # circular (ValueError), or deeper than the standard encoder goes too

    return encode


class _NotPlain(Exception):
    """A value `indented` leaves to the standard encoder (a tuple, a subclass, a key that is not a str...)."""


_escape = _std.encode_basestring_ascii  # the C escaper json.dumps uses (ensure_ascii)
_float_repr = float.__repr__
_int_repr = int.__repr__
_INF = float("inf")


def _float_text(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return _float_repr(o)


def _indent_into(o: Any, parts: list[str], nl: str) -> None:
    """Append `o` as `json.dumps(o, indent=2)` writes it at the depth whose line start `nl` is."""
    t = type(o)
    if t is str:
        parts.append(_escape(o))
    elif t is dict:
        if not o:
            parts.append("{}")
            return
        inner = nl + "  "
        first = True
        for k, v in o.items():
            if type(k) is not str:
                raise _NotPlain
            parts.append(("{" if first else ",") + inner + _escape(k) + ": ")
            first = False
            _indent_into(v, parts, inner)
        parts.append(nl + "}")
    elif t is list:
        if not o:
            parts.append("[]")
            return
        inner = nl + "  "
        first = True
        for v in o:
            parts.append(("[" if first else ",") + inner)
            first = False
            _indent_into(v, parts, inner)
        parts.append(nl + "]")
    elif o is None:
        parts.append("null")
    elif o is True:
        parts.append("true")
    elif o is False:
        parts.append("false")
    elif t is int:
        parts.append(_int_repr(o))
    elif t is float:
        parts.append(_float_text(o))
    else:
        raise _NotPlain


def indented(o: Any) -> str:
    """`json.dumps(o, indent=2)`, character for character, errors included. With `indent` the standard
    library encodes in pure Python through nested generators (the C encoder takes no indent): plain values
    (dicts with str keys, lists, str, int, float, bool, None, exactly those types) are written here in one
    pass, ~5x faster; anything else, a cycle included, is left to json.dumps."""
    parts: list[str] = []
    try:
        _indent_into(o, parts, "\n")
    except (_NotPlain, RecursionError):
        return json.dumps(o, indent=2)
    return "".join(parts)
