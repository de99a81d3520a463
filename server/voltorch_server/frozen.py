"""Frozen dataclasses made on the hot paths without their generated `__init__`.

A frozen dataclass's `__init__` sets every field through `object.__setattr__`; a workflow step makes
dozens of such objects (events, views, candidates, tasks, results) and a key read one or two, so the
hot paths fill the instance's dict instead. The caller gives every field, in the class's order, so
the object equals (and prints as) the constructor's; tests compare the two. Only for classes without
`__post_init__`, `__slots__` or `init=False` fields.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

_new = object.__new__
_set = object.__setattr__


def made(cls: type[T], /, **fields: Any) -> T:
    """`cls(**fields)` without its `__init__`: the keyword dict becomes the instance's dict."""
    obj = _new(cls)
    _set(obj, "__dict__", fields)
    return obj


def blank(cls: type[T]) -> T:
    """An instance whose dict the caller fills with every field (for rows unpacked straight into it)."""
    return _new(cls)


def replaced(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace(obj, **changes)` without `__init__`: the instance dict copied, then the
    changes. Only for objects that keep nothing but their fields there (an `AgentView`, which keeps its
    ranking beside them, is not one: `dataclasses.replace` copies fields only)."""
    new = _new(type(obj))
    _set(new, "__dict__", {**obj.__dict__, **changes})
    return new
