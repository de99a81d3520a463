"""What every component shares: a name, a lifecycle, and a health check the watcher calls.

The Runtime also hands every component this server's metric instruments (`self.metrics`) and error
recorder (`self.record_error(...)`); until then they are no-ops, so a component built alone (a unit
test) works unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ...metrics import NOOP, Metrics

log = logging.getLogger("voltorch")


class ErrorSink(Protocol):
    """Where components record their internal failures (the system's ErrorLog)."""

    def record(
        self,
        component: str,
        code: str,
        message: str,
        *,
        correlation_id: str = "",
        details: dict[str, Any] | None = None,
        exc: BaseException | None = None,
    ) -> Any: ...


class Component:
    name = "component"
    enabled = True  # False = disabled in config: not checked, not restartable
    metrics: Metrics = NOOP
    error_log: ErrorSink | None = None

    def start(self) -> None:
        """Start background work (threads, timers). Must be safe to call again after stop()."""

    def stop(self) -> None:
        """Stop background work; keep acknowledged data and subscribers' positions."""

    def check(self) -> str | None:
        """Raise if the component is not healthy; return a reason to report it DEGRADED (working, but
        not well), or None."""

    def details(self) -> dict[str, Any]:
        """Numbers shown in GetHealth (e.g. {"subscribers": 3}); the keys in metrics.LEVELS feed gauges."""
        return {}

    def record_error(
        self,
        code: str,
        message: str,
        *,
        correlation_id: str = "",
        details: dict[str, Any] | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Record an internal failure for ListErrors/GetTrace, with the current trace ids. Never raises.

        `code` is UPPER_SNAKE (e.g. "STEP_TIMEOUT"); `correlation_id` defaults to telemetry.correlated()'s.
        """
        if self.error_log is None:
            log.warning("%s error %s: %s", self.name, code, message)
            return
        try:
            self.error_log.record(
                self.name, code, message, correlation_id=correlation_id, details=details, exc=exc
            )
        except Exception:
            log.exception("recording an error of %s failed", self.name)
