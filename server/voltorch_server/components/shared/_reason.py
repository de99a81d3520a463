"""The free text a caller gives an operation (why it cancelled, paused, restarted something)."""

from __future__ import annotations

MAX_REASON = 1024


def reason_text(value: str, default: str = "") -> str:
    """`value` (`default` when empty), its first MAX_REASON characters: it goes into an event, a row and
    the console, and an engine's own callers pass texts built from other texts (kept, not refused)."""
    return (value or default)[:MAX_REASON]
