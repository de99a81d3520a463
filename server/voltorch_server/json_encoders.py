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
