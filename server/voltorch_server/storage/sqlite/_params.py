"""NULL parameters bound without sqlite3's failed adapter search.

Python's sqlite3 binds int, float and str (exact types) as they are; any other value, None included, is
first offered to the adapters: a registry lookup and, when that misses, `__adapt__` looked up on the
PrepareProtocol type and `__conform__` on the value. The first of those builds and discards a formatted
AttributeError, ~3,000 instructions per NULL parameter; a workflow step binds ~20 (the step rows' empty
columns, the coordination's). With an adapter registered for None the registry lookup finds it, and the
adapter, a C callable that returns None for any argument, hands back the same None to bind as NULL.
Registered when the SQLite backend is imported (sqlite3's adapters are the process's, and this one
changes nothing any other user of sqlite3 would see)."""

from __future__ import annotations

import sqlite3

_NOTHING: dict[object, None] = {}
_to_none = _NOTHING.get  # _NOTHING.get(value) is None for every value: called in C, no Python frame

sqlite3.register_adapter(type(None), _to_none)
