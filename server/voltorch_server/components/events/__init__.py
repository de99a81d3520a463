"""The event log: publish, query, follow, correlate, retain."""

from ._causal import causal_order
from ._filter import EventFilter, validate_glob
from ._log import Event, EventLog, Receipt
from ._new import NewEvent, Prepared, prepare_own
from ._retention import Floor
from ._store_port import EventsPort

__all__ = [
    "Event",
    "EventFilter",
    "Floor",
    "EventLog",
    "EventsPort",
    "NewEvent",
    "Prepared",
    "Receipt",
    "causal_order",
    "prepare_own",
    "validate_glob",
]
