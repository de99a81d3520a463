"""What every component shares: a name, a lifecycle, and a health check the watcher calls."""

from __future__ import annotations


class Component:
    name = "component"

    def start(self) -> None:
        """Start background work (threads, timers). Must be safe to call again after stop()."""

    def stop(self) -> None:
        """Stop background work; keep acknowledged data and subscribers' positions."""

    def check(self) -> None:
        """Raise if the component is not healthy."""
