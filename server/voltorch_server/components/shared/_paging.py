"""AIP-158 paging: page sizes and opaque page tokens that remember the query they belong to."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The JSON a page carries, at most (beyond its first item): items of up to 1 MiB each would otherwise make a
# page larger than the 4 MiB a gRPC message may be. A page then ends early, with a token (AIP-158 allows it).
PAGE_BYTES = 1 << 20


def page_size(value: int, *, field: str = "page_size", default: int = DEFAULT_PAGE_SIZE) -> int:
    if value < 0:
        raise InvalidArgument(field, f"must not be negative (got {value})", reason="PAGE_SIZE_INVALID")
    return min(value or default, MAX_PAGE_SIZE)


def fitting(sizes: Iterable[int], budget: int = PAGE_BYTES) -> int:
    """How many leading items (of these sizes in bytes) a page takes: all while their total stays within
    budget, and always the first."""
    total = count = 0
    for size in sizes:
        total += size
        if count and total > budget:
            break
        count += 1
    return count


_DIGITS = re.compile(r"[0-9]+")


def wire_bytes(text: str) -> int:
    """At least what a stored text (JSON or not) weighs in an answer. JSON goes out as a
    google.protobuf.Value: a number `0,` of two characters is a 9-byte double plus the tag and length of its
    Value (11 bytes), and each item (per `,`) a few bytes more; other text goes out as UTF-8."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size + 10 * len(_DIGITS.findall(text)) + 4 * text.count(",")


def row_bytes(row: Any, skip: tuple[str, ...] = ()) -> int:
    """A stored row's text (its JSON columns included) as an answer carries it: what a page of it weighs."""
    names = row.keys()  # a sqlite3.Row iterates over its values, not its names
    return sum(wire_bytes(v) for k in names if k not in skip and isinstance(v := row[k], str))


def encode_token(query: dict[str, Any], position: Any) -> str:
    raw = json.dumps({"q": query, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(
    token: str,
    query: dict[str, Any],
    *,
    field: str = "page_token",
    shape: Callable[[Any], bool] | None = None,
) -> Any:
    """Return the position stored in token, or None for an empty token.

    A token that is not ours, whose position is not of the `shape` its listing gives, or that was issued
    for a different query, is INVALID_ARGUMENT.
    """
    if not token:
        return None
    malformed = InvalidArgument(
        field, "malformed page token; pass back next_page_token unchanged", reason="PAGE_TOKEN_INVALID"
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position = data["p"]
        issued_for = data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise malformed from None
    if issued_for != json.loads(json.dumps(query, sort_keys=True)):
        raise InvalidArgument(
            field, "page token was issued for a different query", reason="PAGE_TOKEN_INVALID"
        )
    if shape is not None and not shape(position):
        raise malformed
    return position


def is_count(position: Any) -> bool:
    """A position that is a non-negative integer (a sequence, a revision, an id)."""
    return isinstance(position, int) and not isinstance(position, bool) and position >= 0


def is_pair(position: Any) -> bool:
    """A position of two values (e.g. a time and an id)."""
    return isinstance(position, list) and len(position) == 2
