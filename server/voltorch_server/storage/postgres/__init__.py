"""PostgreSQL storage for several replicas on one database: the pooled handle with counter rows locked
to commit (one order across replicas), LISTEN/NOTIFY followers, advisory-lock leases, migrations."""

from ._db import Lease, Listener, PgDatabase, PgTx
from ._migrations import migrate

__all__ = ["Lease", "Listener", "PgDatabase", "PgTx", "migrate"]
