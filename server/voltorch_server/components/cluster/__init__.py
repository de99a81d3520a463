"""The cluster: this replica's identity and heartbeat, and every member's liveness as all replicas see it."""

from ._cluster import PRUNE_LEASE, Cluster, new_replica_id
from ._member import Member, MemberRow
from ._store_port import MembersPort

__all__ = ["PRUNE_LEASE", "Cluster", "Member", "MemberRow", "MembersPort", "new_replica_id"]
