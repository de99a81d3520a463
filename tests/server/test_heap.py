"""The server process's start-up heap is frozen out of full collections (`heap.settle`)."""

from __future__ import annotations

import gc

from voltorch_server import heap


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
