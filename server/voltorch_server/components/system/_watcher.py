"""The system watcher: health checks, automatic restarts, metrics collection, and the system's own events.

Every `watch_interval` it calls each component's `check()` (in a small pool, with a timeout, so one
hung check cannot stall the others) and reads its `details()`. Status rules:

  * UNHEALTHY — the check raised or did not return within `health_check_timeout`;
  * DEGRADED  — the check passed but took longer than `health_slow_seconds`, or returned a reason to
                be degraded (e.g. the LLM endpoint's recent calls fail), or the component failed
                within the last `restart_stable_seconds` (it is recovering), or it is being restarted;
  * HEALTHY   — otherwise. Overall: UNHEALTHY if any enabled component is, else DEGRADED if any is,
                else HEALTHY.

An UNHEALTHY component is restarted (stop() + start()): the first time at once, then after
`restart_backoff` doubling up to `restart_backoff_max`, at most `restart_limit` times; then it is left
alone (component.restart.limit.exceeded) until it passes again or an operator restarts it. Passing for
`restart_stable_seconds` resets the count. Components keep acknowledged data across stop()/start() and
end their streams with a resume point, so a restart loses nothing.

Every `metrics_interval` it folds the metric readers into the SQLite history and publishes
`system.metrics.collected`. It also publishes `component.health.checked` (one per check round),
`component.restarted`, `orchestrator.started` and `orchestrator.stopping`.
"""

from __future__ import annotations

import contextvars
import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ... import __version__, cpus
from ...errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ...metrics import LEVELS, Metrics
from ...priority import Priority
from ...telemetry import tracer
from ..events import validate_glob
from ..shared import Component, reason_text
from ._errors_log import ErrorLog, ErrorRecord
from ._metric_history import MetricHistory, Series
from ._metrics import MetricCollector, MetricPoint
from ._store_port import SystemPort

log = logging.getLogger("voltorch.watcher")


class HealthStatus(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"  # not checked yet, or disabled
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: HealthStatus
    enabled: bool
    message: str
    last_check_time: float | None
    check_latency: float
    error_count: int
    restart_count: int
    consecutive_failures: int
    last_error: ErrorRecord | None
    start_time: float
    details: dict[str, str]


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    components: list[ComponentHealth]
    uptime: float
    start_time: float
    version: str
    active_workflows: int
    queued_workflows: int
    registered_agents: int
    connected_workers: int
    error_count: int
    last_error: ErrorRecord | None


@dataclass(frozen=True)
class MetricsReport:
    metrics: list[MetricPoint]
    history: list[Series]
    collect_time: float
    interval: float
    retention: float


@dataclass
class _State:
    status: HealthStatus = HealthStatus.UNSPECIFIED
    message: str = "not checked yet"
    last_check: float | None = None
    latency: float = 0.0
    consecutive_failures: int = 0
    restart_count: int = 0
    auto_restarts: int = 0  # automatic restarts since the component was last stable
    last_restart: float = float("-inf")  # monotonic
    last_failure: float | None = None  # monotonic
    limit_exceeded: bool = False
    start_time: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    restarting: threading.Lock = field(default_factory=threading.Lock)
    pending: Future | None = None


def overall(statuses: Sequence[HealthStatus]) -> HealthStatus:
    """UNHEALTHY if any is, else DEGRADED if any is, else HEALTHY (UNSPECIFIED ones are ignored)."""
    if HealthStatus.UNHEALTHY in statuses:
        return HealthStatus.UNHEALTHY
    if HealthStatus.DEGRADED in statuses:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def _probe(component: Component) -> tuple[float, dict[str, Any], str]:
    t0 = time.perf_counter()
    degraded = component.check() or ""
    latency = time.perf_counter() - t0
    try:
        details = dict(component.details() or {})
    except Exception:
        details = {}
    return latency, details, degraded


class Watcher(Component):
    name = "watcher"

    def __init__(
        self,
        config: Any,
        components: dict[str, Component],
        *,
        store: SystemPort,
        events: Any,
        errors: ErrorLog,
        metrics: Metrics,
    ):
        self.config = config
        self.components = components  # the Runtime's dict: components added later are watched too
        self.events = events
        self.errors = errors
        self.metrics = metrics
        self.collector = MetricCollector(metrics.reader)
        self.history = MetricHistory(store, config.metrics_retention_seconds)
        # Called as sink(component_name, status) on every change; name "" is the overall status.
        self.sinks: list[Callable[[str, HealthStatus], None]] = []
        self.start_time = time.time()
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._cycle = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._published: dict[str, HealthStatus] = {}
        events.add_listener(metrics.event_heard)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="watcher-check")
        now = time.time()
        for name in self.components:
            st = self._state(name)
            st.start_time = st.start_time or now
        self._state(self.name).start_time = now
        self.check_now()
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread and thread is not threading.current_thread():
            thread.join(timeout=10)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the watcher loop is not running")

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "watch_interval": self.config.watch_interval,
            "metrics_interval": self.config.metrics_interval,
        }
        if self.metrics.prometheus_port:
            out["prometheus_port"] = self.metrics.prometheus_port
        if cpus.supported():  # where the process runs now (cpu_affinity, and its moves)
            out["cpus"] = cpus.cpu_list(cpus.allowed())
        return out

    def _loop(self) -> None:
        cfg = self.config
        next_check = time.monotonic() + cfg.watch_interval
        next_metrics = time.monotonic() + cfg.metrics_interval
        while not self._stop.wait(max(0.0, min(next_check, next_metrics) - time.monotonic())):
            now = time.monotonic()
            if now >= next_check:
                try:
                    self.check_now()
                except Exception:
                    log.exception("health check round failed")
                next_check = time.monotonic() + cfg.watch_interval
            if now >= next_metrics:
                try:
                    self.collect_metrics()
                except Exception:
                    log.exception("metrics collection failed")
                next_metrics = time.monotonic() + cfg.metrics_interval

    def _state(self, name: str) -> _State:
        with self._lock:
            st = self._states.get(name)
            if st is None:
                st = self._states[name] = _State(start_time=time.time())
            return st

    # -- health checks ------------------------------------------------------------------------------

    def check_now(self) -> HealthStatus:
        """Run one check round (restarting failed components as the policy allows); returns overall."""
        with self._cycle, tracer.start_as_current_span("watcher.check_health"):
            items = list(self.components.items())
            for name, comp in items:
                if comp is not self and getattr(comp, "enabled", True):
                    self._submit(name, comp)
            deadline = time.monotonic() + self.config.health_check_timeout
            for name, comp in items:
                self._judge(name, comp, deadline, allow_restart=True)
            self._publish()
            summary: dict[str, dict[str, Any]] = {
                name: {
                    "status": st.status.value,
                    "message": st.message,
                    "latency_ms": round(st.latency * 1e3, 3),
                }
                for name, st in self._snapshot_states(items)
            }
            status = overall([HealthStatus(v["status"]) for v in summary.values()])
            self._emit(
                "component.health.checked",
                {"status": status.value, "components": summary},
                source=self.name,
                priority=Priority.LOW,
            )
            return status

    def _emit(self, type_: str, data: Any, **kw: Any) -> None:
        """Publish one of the watcher's events. When the log's database is unreachable (PostgreSQL) the
        event is dropped with a warning: health is still judged and reported, and the failing
        components say why."""
        try:
            self.events.emit(type_, data, **kw)
        except Unavailable as exc:
            log.warning("could not publish %s: %s", type_, exc.message)

    def _snapshot_states(self, items: list[tuple[str, Component]]) -> list[tuple[str, _State]]:
        return [(name, self._state(name)) for name, _ in items]

    def _submit(self, name: str, comp: Component) -> None:
        st = self._state(name)
        if st.pending is not None and not st.pending.done():
            return  # the previous check is still running (hung): judged as a timeout below
        pool = self._pool
        if pool is None:
            return
        ctx = contextvars.copy_context()
        st.pending = pool.submit(ctx.run, _probe, comp)

    def _judge(self, name: str, comp: Component, deadline: float, *, allow_restart: bool) -> None:
        st = self._state(name)
        now_wall, now = time.time(), time.monotonic()
        if comp is self:
            alive = self._thread is None or self._thread.is_alive()
            with self._lock:
                st.details = self.details()
            self._set(st, HealthStatus.HEALTHY if alive else HealthStatus.UNHEALTHY, "ok", 0.0, now_wall)
            return
        if not getattr(comp, "enabled", True):
            self._set(st, HealthStatus.UNSPECIFIED, "disabled in config", 0.0, now_wall)
            return
        fut = st.pending
        if fut is None:
            return
        try:
            latency, details, degraded = fut.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            error = f"check did not return within {self.config.health_check_timeout:g}s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        else:
            with self._lock:
                st.consecutive_failures = 0
                st.details = details
                stable = self.config.restart_stable_seconds
                recovering = st.last_failure is not None and now - st.last_failure < stable
                if st.last_failure is not None and not recovering:
                    st.last_failure, st.auto_restarts, st.limit_exceeded = None, 0, False
            if recovering:
                self._set(
                    st, HealthStatus.DEGRADED, "recovering: failed recently, passing now", latency, now_wall
                )
            elif degraded:
                self._set(st, HealthStatus.DEGRADED, degraded, latency, now_wall)
            elif latency > self.config.health_slow_seconds:
                self._set(st, HealthStatus.DEGRADED, f"slow: check took {latency:.2f}s", latency, now_wall)
            else:
                self._set(st, HealthStatus.HEALTHY, "ok", latency, now_wall)
            return
        was = st.status
        with self._lock:
            st.consecutive_failures += 1
            st.last_failure = now
        gave_up = f"; restart limit ({self.config.restart_limit}) exceeded, not restarting"
        message = error + gave_up if st.limit_exceeded else error
        self._set(st, HealthStatus.UNHEALTHY, message, time.monotonic() - now, now_wall)
        if was != HealthStatus.UNHEALTHY:
            self.errors.record(name, "COMPONENT_UNHEALTHY", error, details={"component": name})
        if allow_restart:
            self._publish()  # let health watchers see the failure before the restart
            self._auto_restart(name, comp, st, error)

    def _set(self, st: _State, status: HealthStatus, message: str, latency: float, when: float) -> None:
        with self._lock:
            st.status, st.message, st.latency, st.last_check = status, message, latency, when

    def _auto_restart(self, name: str, comp: Component, st: _State, error: str) -> None:
        cfg = self.config
        if st.limit_exceeded:
            return
        if st.auto_restarts >= cfg.restart_limit:
            with self._lock:
                st.limit_exceeded = True
                st.message = f"{error}; restart limit ({cfg.restart_limit}) exceeded, not restarting"
            data = {
                "component": name,
                "restarts": st.auto_restarts,
                "limit": cfg.restart_limit,
                "error": error,
            }
            self._emit("component.restart.limit.exceeded", data, source=self.name, priority=Priority.CRITICAL)
            self.errors.record(name, "RESTART_LIMIT_EXCEEDED", f"{name}: {error}", details=data)
            return
        delay = 0.0 if st.auto_restarts == 0 else cfg.restart_backoff * 2 ** (st.auto_restarts - 1)
        delay = min(delay, cfg.restart_backoff_max)
        wait = st.last_restart + delay - time.monotonic()
        if wait > 0:
            with self._lock:
                st.message = f"{error}; next restart in {wait:.1f}s"
            return
        try:
            self._restart(name, comp, st, f"health check failed: {error}", automatic=True)
        except Aborted:
            pass  # an operator's restart is already under way

    # -- restarts -----------------------------------------------------------------------------------

    def restart(self, name: str, reason: str = "") -> ComponentHealth:
        """Restart one component now (operator request); resets its automatic-restart count."""
        comp = self.components.get(name)
        if comp is None:
            raise NotFound("component", name)
        if not getattr(comp, "enabled", True):
            raise FailedPrecondition(f"component {name!r} is disabled in config", reason="COMPONENT_DISABLED")
        st = self._state(name)
        reason = reason_text(reason)
        if comp is self:
            return self._restart_self(st, reason)
        with self._lock:
            st.auto_restarts, st.limit_exceeded = 0, False
        self._restart(name, comp, st, reason or "requested", automatic=False)
        self._publish()
        return self.component_health(name)

    def _restart_self(self, st: _State, reason: str) -> ComponentHealth:
        if not st.restarting.acquire(blocking=False):
            raise Aborted("a restart of 'watcher' is already in progress", reason="RESTART_IN_PROGRESS")
        try:
            self.stop()
            self.start()
            with self._lock:
                st.restart_count += 1
                st.start_time = time.time()
            self._restarted(self.name, st, reason or "requested", automatic=False, error=None)
        finally:
            st.restarting.release()
        return self.component_health(self.name)

    def _restart(self, name: str, comp: Component, st: _State, reason: str, *, automatic: bool) -> None:
        if not st.restarting.acquire(blocking=False):
            raise Aborted(f"a restart of {name!r} is already in progress", reason="RESTART_IN_PROGRESS")
        try:
            with tracer.start_as_current_span(
                "component.restart",
                attributes={"voltorch.component": name, "voltorch.restart.automatic": automatic},
            ):
                # A failed component stays UNHEALTHY while it restarts (no SERVING flap for health probes).
                during = HealthStatus.UNHEALTHY if automatic else HealthStatus.DEGRADED
                self._set(st, during, "restarting", st.latency, time.time())
                self._publish()
                error: BaseException | None = None
                for step in (comp.stop, comp.start):
                    try:
                        step()
                    except Exception as exc:
                        log.exception("%s.%s() failed during restart", name, step.__name__)
                        error = error or exc
                with self._lock:
                    st.restart_count += 1
                    st.start_time = time.time()
                    st.last_restart = time.monotonic()
                    if automatic:
                        st.auto_restarts += 1
                self._restarted(name, st, reason, automatic=automatic, error=error)
                if error is not None:
                    self.errors.record(
                        name, "COMPONENT_RESTART_FAILED", f"restart of {name} failed", exc=error
                    )
                self._submit(name, comp)
                self._judge(
                    name, comp, time.monotonic() + self.config.health_check_timeout, allow_restart=False
                )
        finally:
            st.restarting.release()

    def _restarted(
        self, name: str, st: _State, reason: str, *, automatic: bool, error: BaseException | None
    ) -> None:
        self.metrics.component_restarts.add(
            1, {"component": name, "trigger": "auto" if automatic else "manual"}
        )
        self._emit(
            "component.restarted",
            {
                "component": name,
                "reason": reason,
                "automatic": automatic,
                "attempt": st.auto_restarts,
                "limit": self.config.restart_limit,
                "restart_count": st.restart_count,
                "ok": error is None,
                "error": f"{type(error).__name__}: {error}" if error else "",
            },
            source=self.name,
            priority=Priority.HIGH,
        )

    # -- reporting ----------------------------------------------------------------------------------

    def _publish(self) -> None:
        """Tell the sinks (the gRPC health service) about every status that changed."""
        with self._lock:
            current = {
                name: st.status
                for name, st in self._states.items()
                if name in self.components and getattr(self.components[name], "enabled", True)
            }
        current[""] = overall(list(current.values()))
        changed = {k: v for k, v in current.items() if self._published.get(k) != v}
        self._published.update(changed)
        for name, status in changed.items():
            for sink in self.sinks:
                try:
                    sink(name, status)
                except Exception:
                    log.exception("health sink failed")

    def statuses(self) -> dict[str, HealthStatus]:
        """The latest status per component name, plus "" for the overall status."""
        with self._lock:
            out = {n: self._states[n].status for n in self.components if n in self._states}
        out[""] = overall([s for n, s in out.items() if getattr(self.components[n], "enabled", True)])
        return out

    def component_health(self, name: str) -> ComponentHealth:
        comp = self.components.get(name)
        if comp is None:
            raise NotFound("component", name)
        st = self._state(name)
        with self._lock:
            return ComponentHealth(
                name=name,
                status=st.status,
                enabled=getattr(comp, "enabled", True),
                message=st.message,
                last_check_time=st.last_check,
                check_latency=st.latency,
                error_count=self.errors.count(name),
                restart_count=st.restart_count,
                consecutive_failures=st.consecutive_failures,
                last_error=self.errors.last(name),
                start_time=st.start_time,
                details={k: str(v) for k, v in st.details.items()},
            )

    def components_health(self) -> list[ComponentHealth]:
        return [self.component_health(name) for name in list(self.components)]

    def health(self, refresh: bool = False) -> Health:
        if refresh:
            self.check_now()
        comps = self.components_health()
        with self._lock:
            levels = _sum_levels(st.details for st in self._states.values())
        now = time.time()
        return Health(
            status=overall([c.status for c in comps if c.enabled]),
            components=comps,
            uptime=now - self.start_time,
            start_time=self.start_time,
            version=__version__,
            active_workflows=int(levels.get("active_workflows", 0)),
            queued_workflows=int(levels.get("queued_workflows", 0)),
            registered_agents=int(levels.get("registered_agents", 0)),
            connected_workers=int(levels.get("connected_workers", 0)),
            error_count=self.errors.count(),
            last_error=self.errors.last(),
        )

    # -- metrics ------------------------------------------------------------------------------------

    def _refresh_levels(self) -> None:
        fresh = []
        for comp in list(self.components.values()):
            try:
                fresh.append(dict(comp.details() or {}))
            except Exception:
                continue
        self.metrics.set_levels(_sum_levels(fresh))

    def metrics_report(
        self, names: Sequence[str] = (), *, include_history: bool = False, since: float | None = None
    ) -> MetricsReport:
        for i, glob in enumerate(names):
            validate_glob(glob, f"names[{i}]")
        now = time.time()
        if since is not None and since > now + 1.0:
            raise InvalidArgument("since", "must not be in the future", reason="TIMESTAMP_INVALID")

        def wanted(name: str) -> bool:
            return not names or any(fnmatch.fnmatchcase(name, g) for g in names)

        self._refresh_levels()
        points = [p for p in self.collector.collect() if wanted(p.name)]
        history = self.history.query(wanted, since) if include_history else []
        return MetricsReport(
            points, history, now, self.config.metrics_interval, self.config.metrics_retention_seconds
        )

    def collect_metrics(self) -> None:
        """One collection interval: history row per series, retention, system.metrics.collected."""
        with tracer.start_as_current_span("watcher.collect_metrics"):
            self._refresh_levels()
            points, samples = self.collector.take_interval()
            now = time.time()
            self.history.record(samples, now)
            if self.config.error_retention_seconds > 0:
                self.errors.prune(now - self.config.error_retention_seconds)
            self._emit(
                "system.metrics.collected",
                _summary(points, self.config.metrics_interval),
                source=self.name,
                priority=Priority.LOW,
            )

    # -- the server's own lifecycle events ---------------------------------------------------------

    def announce_started(self, address: str) -> None:
        with tracer.start_as_current_span("orchestrator.start"):
            self._emit(
                "orchestrator.started",
                {
                    "address": address,
                    "version": __version__,
                    "pid": os.getpid(),
                    "components": list(self.components),
                    "status": self.statuses()[""].value,
                },
                source="orchestrator",
                priority=Priority.HIGH,
            )

    def announce_stopping(self) -> None:
        with tracer.start_as_current_span("orchestrator.stop"):
            self._emit(
                "orchestrator.stopping",
                {"uptime_seconds": round(time.time() - self.start_time, 3)},
                source="orchestrator",
                priority=Priority.HIGH,
            )


def _sum_levels(details: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in details:
        for key in LEVELS:
            try:
                out[key] = out.get(key, 0.0) + float(d.get(key, 0) or 0)
            except (TypeError, ValueError):
                continue
    return out


def _summary(points: list[MetricPoint], interval: float) -> dict[str, Any]:
    """A compact digest of one collection for the system.metrics.collected event."""
    totals: dict[str, float] = {}
    rpc_errors = 0.0
    for p in points:
        totals[p.name] = totals.get(p.name, 0.0) + p.value
        if p.name == "rpc.server.duration" and p.attributes.get("rpc.grpc.status_code", "0") != "0":
            rpc_errors += p.value

    def get(name: str) -> float:
        return round(totals.get(name, 0.0), 6)

    return {
        "interval_seconds": interval,
        "series": len(points),
        "process": {
            "memory_bytes": int(get("process.memory.usage")),
            "cpu_utilization": get("process.cpu.utilization"),
            "threads": int(get("process.thread.count")),
        },
        "rpc": {"calls": int(get("rpc.server.duration")), "errors": int(rpc_errors)},
        "events": {
            "published": int(get("voltorch.events.published")),
            "delivered": int(get("voltorch.events.delivered")),
        },
        "workflows": {
            "active": int(get("voltorch.workflows.active")),
            "queued": int(get("voltorch.workflows.queued")),
            "started": int(get("voltorch.workflows.started")),
            "completed": int(get("voltorch.workflows.completed")),
            "failed": int(get("voltorch.workflows.failed")),
        },
        "coordination_queue_depth": int(get("voltorch.coordination.queue_depth")),
        "llm_tokens": int(get("voltorch.llm.tokens")),
        "errors": int(get("voltorch.errors")),
    }
