"""The server's heap: its start-up objects are frozen out of full collections (`heap.settle`), and what a
workflow makes is freed by reference counting, not left in cycles for the collector."""

from __future__ import annotations

import gc
from collections import Counter
from types import FunctionType

import voltorch
from voltorch_server import heap

BOTH_BACKENDS = True  # the tests using a server run on SQLite and on PostgreSQL (tests/conftest.py)


def test_settle_freezes_what_exists_and_leaves_later_objects_collectable():
    before = gc.get_freeze_count()
    early = [object() for _ in range(10)]  # lists are tracked: the container lands in the frozen set
    try:
        frozen = heap.settle()
        # Other tests' lingering threads may free frozen objects meanwhile; nothing else freezes any.
        assert before + 1 <= frozen and gc.get_freeze_count() <= frozen
        assert not any(obj is early for obj in gc.get_objects())  # frozen objects are not in any generation
        late = [object()]
        assert any(obj is late for obj in gc.get_objects())  # what comes after is collected as usual
    finally:
        gc.unfreeze()  # this test process goes on allocating: leave its collector as it was


def _ours(obj: object) -> str:
    """The name of a voltorch object (an instance of one of its classes, or one of its functions), else ''."""
    kind = type(obj)
    if isinstance(obj, FunctionType):
        return obj.__qualname__ if obj.__module__.startswith("voltorch") else ""
    return kind.__qualname__ if kind.__module__.startswith("voltorch") else ""


def test_complete_workflows_leave_no_reference_cycles_of_ours(client: voltorch.Client) -> None:
    """Transactions and their callbacks, tasks, coordinations, state batches, the engines' closures: freed
    once done with. Under load the collector's passes over a server's in-flight work cost it ~10 % of its CPU,
    and each cycle it had to find kept everything the cycle held alive until then (bench/README.md)."""

    def run() -> None:
        started = client.workflows.execute_complete("Build a CLI calculator with add and subtract")
        assert client.workflows.wait(started.execution.id, timeout=30).status == "completed"

    run()  # first-use caches and imports
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept in gc.garbage to be named
    try:
        for _ in range(3):
            run()
        gc.collect()
        cycles = Counter(name for obj in gc.garbage if (name := _ours(obj)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not cycles, f"left in reference cycles: {dict(cycles.most_common(12))}"
