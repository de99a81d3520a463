"""Causal ordering of the events of one correlation: a cause always precedes its effects.

Causation ids are given by publishers, so an effect may carry a smaller sequence than its cause, point
outside the correlation, or (maliciously) form a cycle; the order here survives all three.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class _Causal(Protocol):
    @property
    def sequence(self) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def causation_id(self) -> str: ...


E = TypeVar("E", bound=_Causal)


@dataclass(frozen=True)
class CausalNode(Generic[E]):
    event: E
    parent_id: str  # "" for a root: no cause, a cause outside the set, or a broken cycle
    child_ids: tuple[str, ...]
    depth: int


def causal_order(events: list[E]) -> list[CausalNode[E]]:
    """Topological order of events by causation (parents first), ties broken by sequence."""
    by_id = {e.id: e for e in events}
    parent = {
        e.id: e.causation_id if e.causation_id in by_id and e.causation_id != e.id else "" for e in events
    }
    children: dict[str, list[E]] = {e.id: [] for e in events}
    for e in events:
        if parent[e.id]:
            children[parent[e.id]].append(e)
    ready = [(e.sequence, e.id) for e in events if not parent[e.id]]
    heapq.heapify(ready)
    remaining = {e.id for e in events}
    depth: dict[str, int] = {}
    out: list[CausalNode[E]] = []
    while remaining:
        if not ready:
            # Only cycles are left: cut the cycle at its oldest event, which becomes a root.
            oldest = min((by_id[i] for i in remaining), key=lambda e: e.sequence)
            parent[oldest.id] = ""
            heapq.heappush(ready, (oldest.sequence, oldest.id))
        _, eid = heapq.heappop(ready)
        if eid not in remaining:
            continue
        remaining.discard(eid)
        p = parent[eid]
        depth[eid] = depth[p] + 1 if p else 0
        kids = sorted(children[eid], key=lambda c: c.sequence)
        out.append(CausalNode(by_id[eid], p, tuple(k.id for k in kids if parent[k.id] == eid), depth[eid]))
        for k in kids:
            if k.id in remaining and parent[k.id] == eid:
                heapq.heappush(ready, (k.sequence, k.id))
    # child_ids were computed when each node was emitted; a cycle cut later may have removed a link.
    return [
        CausalNode(n.event, n.parent_id, tuple(c for c in n.child_ids if parent[c] == n.event.id), n.depth)
        for n in out
    ]
