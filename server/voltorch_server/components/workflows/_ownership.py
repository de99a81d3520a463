"""Which replica runs an execution, when several share one database (PostgreSQL).

An execution is owned through a lease: its row names the owner replica and an epoch. The lease lasts as
long as the owner's member row is refreshed by its heartbeat (components/cluster): one heartbeat renews
the leases of every execution the replica owns, instead of one write per execution. Once the owner's
heartbeat is older than the member timeout, another replica claims the execution at the next epoch and
continues it from its checkpoints. Every write of a run is fenced by its epoch (the execution row is
updated only `WHERE epoch = <the run's>`, in the same transaction as the checkpoint), so an owner that was
paused or cut off and comes back writes nothing for an execution that moved: its transaction rolls back
and it drops the run.

New executions are claimed, not pinned to the replica that received the RPC: each replica claims its fair
share of what runs and waits in the cluster (`fair_share`), the unowned rest stays queued for the others
(woken by the `workflow.execution.queued` event). Pause, resume and cancel on a replica that does not own
the execution first claim it (next epoch), then act: the old owner's run is fenced from then on."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


class Fenced(Exception):
    """A run's checkpoint found its execution at a later epoch: another replica owns it now."""

    def __init__(self, execution_id: str, epoch: int, how: str = "a checkpoint was not written (fenced)"):
        super().__init__(f"execution {execution_id} moved to another replica (this run's epoch {epoch})")
        self.execution_id, self.epoch, self.how = execution_id, epoch, how


@dataclass(frozen=True)
class Ownership:
    """This replica's id and how it shares executions. `shared`: other replicas use the same database
    (claims and takeovers happen); on SQLite the one server owns everything."""

    replica_id: str
    shared: bool = False
    member_timeout: float = 10.0

    def alive_since(self) -> float:
        """Heartbeats older than this are of dead members."""
        return time.time() - self.member_timeout


def fair_share(members: list[str], running: dict[str, int], me: str, waiting: int) -> int:
    """How many more executions `me` may take now: an equal part of what runs on the live members plus
    what waits unowned, less what it runs already (at least one when it is the only live member)."""
    live = set(members) | {me}
    total = sum(n for owner, n in running.items() if owner in live) + waiting
    share = math.ceil(total / len(live))
    return max(share - running.get(me, 0), 1 if len(live) == 1 and waiting else 0)
