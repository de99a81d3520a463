"""The tests' replicas: `voltorch serve` processes on one database (voltorch_server.replica_processes,
which `make cluster` starts too)."""

from voltorch_server.replica_processes import Replica, replicas, start

__all__ = ["Replica", "replicas", "start"]
