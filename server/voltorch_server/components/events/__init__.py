"""The event log: publish, query, follow, correlate, retain."""

from ._causal import causal_order
from ._filter import EventFilter, validate_glob
from ._log import EVENT_COLUMNS, Event, EventLog, Receipt, row_to_event
from ._new import NewEvent, Prepared

__all__ = [
    "EVENT_COLUMNS",
    "Event",
    "EventFilter",
    "EventLog",
    "NewEvent",
    "Prepared",
    "Receipt",
    "causal_order",
    "row_to_event",
    "validate_glob",
]
