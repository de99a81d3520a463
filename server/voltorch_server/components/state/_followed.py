"""PostgreSQL: the committed-row cache kept true across replicas by the state follower.

Several replicas write one database, so a replica's cache changes only through its follower
(`StateStore._catch_up`), which reads every committed kv_history row by position, in order — after
each local commit and at each NOTIFY — and applies it to the cache before this replica's watchers hear
of it. A reader that missed fills the cache from the database only with a row the follower has already
passed (its mod_revision at most the newest revision applied in full): a fresher row would be
overwritten by older changes the follower has yet to apply, and reads would go back in time.
A write batch catches the follower up before it looks at cached rows (its revision lock keeps new
commits out meanwhile), so a write never computes a version from a stale row.

What a GetKey on a replica then sees (the guarantee):
- reads on one replica never go back in time;
- a write this replica acknowledged is visible to its reads at once (applied before the ack);
- once a Watch on this replica has delivered a change, GetKey here returns it or something newer (the
  cache is updated before watchers hear);
- a write acknowledged by another replica shows here once the follower has read it, one NOTIFY later
  (about a millisecond on loopback). The cache is used only while the follower's LISTEN connection is
  up and its last catch-up reached the database less than FOLLOWER_SILENCE seconds ago (it catches up
  at least every second); otherwise reads go to the database. ListKeys and History always read the database. A client that
  needs another replica's write at once reads through that replica or waits for its Watch event.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._kv_cache import Row

PUT = "PUT"


def from_staged(history: Sequence[tuple]) -> list[tuple[str, Row | None]]:
    """A staged change as the cache applies it (the key and its row after it; None: deleted), from the history tuples a write batch inserts (`_Writer._record`'s order)."""
    return [(h[2], Row(h[2], h[4], h[5], h[6], h[1], h[7], h[8]) if h[3] == PUT else None) for h in history]
