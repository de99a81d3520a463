"""What a transaction runs once it has committed, or once it has rolled back, shared by both backends'
transactions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from itertools import chain

log = logging.getLogger("voltorch.db")


class AfterCommit:
    """Callbacks in order: those asked to come first (a cache that must be current before anyone hears of
    the commit), in the order they were asked, then the rest in theirs. Two parts of one transaction that
    each put a cache first must update it in their own order, or the older part's values win."""

    __slots__ = ("_first", "_rest")

    def __init__(self) -> None:
        self._first: list[Callable[[], None]] = []
        self._rest: list[Callable[[], None]] = []

    def add(self, fn: Callable[[], None], first: bool) -> None:
        (self._first if first else self._rest).append(fn)

    def __iter__(self) -> Iterator[Callable[[], None]]:
        return chain(self._first, self._rest)

    def run(self) -> None:
        """Run the callbacks in order, then forget them. A callback often holds its transaction, which
        holds this: forgotten, that cycle is freed at once instead of waiting for the garbage collector,
        whose passes over a server's in-flight work cost it ~10 % of its CPU under load."""
        try:
            for fn in chain(self._first, self._rest):
                fn()
        finally:
            self._first.clear()
            self._rest.clear()

    def clear(self) -> None:
        """Forget the callbacks without running them (the transaction rolled back)."""
        self._first.clear()
        self._rest.clear()


def rolled_back(undo: list[Callable[[], None]], after: AfterCommit) -> None:
    """A transaction has rolled back: run its rollback callbacks, the last registered first (each undoes
    in memory what its caller did inside the transaction, and a later change may rest on an earlier one),
    then forget them and its after-commit callbacks (they hold the transaction: no cycle left). A failing
    callback is logged, never raised: the caller hears of the transaction's own error, and the others
    still run."""
    try:
        while undo:
            fn = undo.pop()
            try:
                fn()
            except Exception:
                log.exception("a rollback callback failed")
    finally:
        undo.clear()
        after.clear()
