"""The system watcher: health checks, automatic restarts with a limit, grpc.health.v1, restarts that lose nothing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
import voltorch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voltorch_server.app import VoltorchServer
from voltorch_server.components import Component
from voltorch_server.components.system import HealthStatus
from voltorch_server.config import Config

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Flaky(Component):
    """A component whose check fails while `broken`; a restart heals it when `heals` is set."""

    name = "flaky"

    def __init__(self, *, heals: bool = True):
        self.broken = False
        self.heals = heals
        self.starts = 0
        self.stops = 0
        self.level = 0
        self.block_stop: threading.Event | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.starts += 1
        if self.heals:
            self.broken = False

    def stop(self) -> None:
        self.stops += 1
        self.stopping.set()
        if self.block_stop is not None:
            self.block_stop.wait(10)

    def check(self) -> None:
        if self.broken:
            raise RuntimeError("flaky is broken")

    def details(self) -> dict[str, Any]:
        return {"active_workflows": self.level, "queue_depth": 2 * self.level}


class Waiter:
    """Collects committed events and health changes so a test can wait on them instead of sleeping."""

    def __init__(self, server: VoltorchServer):
        self._cond = threading.Condition()
        self.events: list[Any] = []
        self.statuses: list[tuple[str, HealthStatus]] = []
        server.runtime.events.add_listener(self._on_event)
        server.runtime.watcher.sinks.append(self._on_status)

    def _on_event(self, e: Any) -> None:
        with self._cond:
            self.events.append(e)
            self._cond.notify_all()

    def _on_status(self, name: str, status: HealthStatus) -> None:
        with self._cond:
            self.statuses.append((name, status))
            self._cond.notify_all()

    def _wait(self, found: Callable[[], list], count: int, timeout: float, what: str) -> list:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(found()) >= count, timeout)
            got = found()
        assert ok, f"timed out waiting for {what}"
        return got

    def event(self, type_: str, count: int = 1, timeout: float = 10.0, **data: Any) -> list[Any]:
        def found() -> list:
            return [
                e for e in self.events if e.type == type_ and all(e.data.get(k) == v for k, v in data.items())
            ]

        return self._wait(found, count, timeout, f"{count} x {type_} {data}")

    def status(self, name: str, status: HealthStatus, timeout: float = 10.0) -> None:
        self._wait(lambda: [s for s in self.statuses if s == (name, status)], 1, timeout, f"{name} {status}")


def fast(config: Config, **kw: Any) -> Config:
    base = dict(
        watch_interval=0.05,
        metrics_interval=60.0,
        restart_backoff=0.01,
        restart_backoff_max=0.05,
        restart_stable_seconds=0.3,
        restart_limit=3,
        health_check_timeout=2.0,
    )
    return replace(config, **{**base, **kw})


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture
def server(config: Config, flaky: Flaky) -> Iterator[VoltorchServer]:
    srv = VoltorchServer(fast(config))
    srv.runtime.components[flaky.name] = flaky
    srv.start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture
def waiter(server: VoltorchServer) -> Waiter:
    return Waiter(server)


def test_started_server_reports_every_component_healthy(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    h = client.health(refresh=True)
    assert h.status == "HEALTHY"
    names = [c.name for c in h.components]
    assert {"state", "events", "watcher", "flaky"} <= set(names)
    assert all(c.status == "HEALTHY" and c.last_check_time is not None for c in h.components)
    assert h.uptime > 0 and h.version
    assert [c.name for c in client.components()] == names  # fixed order
    started = list(client.events.list("orchestrator.started"))
    assert len(started) == 1 and started[0].data["address"] == server.target


def test_failing_component_is_restarted_and_recovers(
    client: voltorch.Client, server: VoltorchServer, flaky: Flaky, waiter: Waiter
) -> None:
    flaky.broken = True
    restarted = waiter.event("component.restarted", component="flaky")[0]
    assert restarted.data["automatic"] is True and restarted.data["ok"] is True
    assert flaky.stops == 1 and flaky.starts == 2
    waiter.status("flaky", HealthStatus.UNHEALTHY)
    # Recovering after the restart (DEGRADED), HEALTHY once stable for restart_stable_seconds.
    waiter.status("flaky", HealthStatus.HEALTHY)
    c = next(c for c in client.components() if c.name == "flaky")
    assert c.restart_count == 1 and c.consecutive_failures == 0
    assert c.error_count >= 1 and c.last_error is not None and c.last_error.code == "COMPONENT_UNHEALTHY"
    assert c.last_error.trace_id  # recorded inside the watcher's check span
    checked = waiter.event("component.health.checked")[0]
    assert checked.trace_id and "flaky" in checked.data["components"]


def test_restart_limit_is_honoured_then_an_operator_restart_recovers(
    config: Config, client: voltorch.Client, server: VoltorchServer, flaky: Flaky, waiter: Waiter
) -> None:
    flaky.heals = False
    flaky.broken = True
    limit = server.config.restart_limit
    exceeded = waiter.event("component.restart.limit.exceeded", component="flaky")[0]
    assert exceeded.data["restarts"] == limit
    seen = len(waiter.events)
    # Two more check rounds: the watcher has given up, so no further restarts.
    waiter._wait(
        lambda: [e for e in waiter.events[seen:] if e.type == "component.health.checked"], 2, 10, "2 checks"
    )
    assert flaky.starts == 1 + limit
    h = client.health()
    assert h.status == "UNHEALTHY" and h.component("flaky").status == "UNHEALTHY"
    assert "restart limit" in h.component("flaky").message
    assert any(e.code == "RESTART_LIMIT_EXCEEDED" for e in client.errors(component="flaky"))
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        assert stub.Check(health_pb2.HealthCheckRequest(service="flaky")).status == NOT_SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == NOT_SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="voltorch.v1.StateService")).status == SERVING
    flaky.heals = True
    back = client.restart_component("flaky", reason="fixed the disk")
    assert back.status in ("DEGRADED", "HEALTHY") and back.restart_count == limit + 1
    manual = waiter.event("component.restarted", component="flaky", automatic=False)[0]
    assert manual.data["reason"] == "fixed the disk"
    waiter.status("", HealthStatus.HEALTHY)


def test_grpc_health_watch_follows_the_watcher(server: VoltorchServer, flaky: Flaky, waiter: Waiter) -> None:
    flaky.heals = False
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "voltorch.v1.StateService", "voltorch.v1.OrchestratorService", "state", "flaky"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == SERVING
        stream = stub.Watch(health_pb2.HealthCheckRequest(service="flaky"), timeout=20)
        seen: queue.Queue[int] = queue.Queue()

        def read() -> None:
            try:
                for r in stream:
                    seen.put(r.status)
            except grpc.RpcError:
                pass  # cancelled at the end of the test

        threading.Thread(target=read, daemon=True).start()
        assert seen.get(timeout=10) == SERVING
        flaky.broken = True
        assert seen.get(timeout=10) == NOT_SERVING
        flaky.broken = False  # it passes again: DEGRADED (recovering) is still SERVING
        assert seen.get(timeout=10) == SERVING
        stream.cancel()


def test_restart_keeps_data_and_streams_resume(client: voltorch.Client, server: VoltorchServer) -> None:
    got: queue.Queue[Any] = queue.Queue()
    rev = client.state.set("w/a", 1).revision
    watch = client.state.watch(prefix="w/", start_revision=rev + 1)
    threading.Thread(target=lambda: [got.put(c) for c in watch], daemon=True).start()
    client.state.set("w/b", 2)
    assert got.get(timeout=10).key == "w/b"
    client.restart_component("state", reason="test")  # ends the watch with UNAVAILABLE + resume point
    client.state.set("w/c", 3)
    assert got.get(timeout=10).key == "w/c"  # resumed: nothing lost, nothing repeated
    assert client.state.get("w/a").value == 1
    assert got.empty()

    # A subscription without a start point sees only what is published once it is established: its
    # first heartbeat says so. After the restart it resumes after the last event it delivered.
    sub = client.events.subscribe("test.*", heartbeats=True)
    events: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=lambda: [events.put(e) for e in sub], daemon=True).start()
    assert isinstance(events.get(timeout=10), voltorch.EventHeartbeat)
    client.events.publish("test.one")
    assert next_event(events).type == "test.one"
    client.restart_component("events")
    client.events.publish("test.two")
    assert next_event(events).type == "test.two"
    sub.close()


def next_event(q: queue.Queue[Any]) -> Any:
    """The next event from a subscription's queue, skipping heartbeats."""
    while isinstance(item := q.get(timeout=10), voltorch.EventHeartbeat):
        pass
    return item


def test_restart_errors(client: voltorch.Client, server: VoltorchServer, flaky: Flaky) -> None:
    with pytest.raises(voltorch.NotFoundError):
        client.restart_component("nope")
    flaky.block_stop = threading.Event()
    first = threading.Thread(target=lambda: client.restart_component("flaky"), daemon=True)
    first.start()
    assert flaky.stopping.wait(10)
    with pytest.raises(voltorch.VoltorchError) as err:
        client.restart_component("flaky")
    assert err.value.code == grpc.StatusCode.ABORTED
    flaky.block_stop.set()
    first.join(10)
    assert client.restart_component("watcher").status == "HEALTHY"  # the watcher restarts itself too


def test_disabled_component_is_not_checked_or_restarted(client: voltorch.Client, flaky: Flaky) -> None:
    flaky.enabled = False
    flaky.broken = True
    h = client.health(refresh=True)
    assert h.status == "HEALTHY" and h.component("flaky").status == "UNSPECIFIED"
    with pytest.raises(voltorch.FailedPreconditionError):
        client.restart_component("flaky")


def test_slow_check_is_degraded(config: Config) -> None:
    gate = threading.Event()

    class Slow(Component):
        name = "slow"

        def check(self) -> None:
            gate.wait(0.05)  # bounded: a stall inside the component, slower than health_slow_seconds

    srv = VoltorchServer(fast(config, health_slow_seconds=0.01, watch_interval=60))
    srv.runtime.components["slow"] = Slow()
    with srv:
        h = srv.runtime.watcher.health(refresh=True)
        comp = srv.runtime.watcher.component_health("slow")
        assert comp.status == HealthStatus.DEGRADED and "slow" in comp.message
        assert h.status == HealthStatus.DEGRADED


def test_hung_check_times_out_without_stalling_the_others(config: Config) -> None:
    release = threading.Event()

    class Hung(Component):
        name = "hung"

        def check(self) -> None:
            release.wait(10)

    srv = VoltorchServer(fast(config, health_check_timeout=0.2, watch_interval=60, restart_limit=0))
    srv.runtime.components["hung"] = Hung()
    with srv:
        comp = srv.runtime.watcher.component_health("hung")
        assert comp.status == HealthStatus.UNHEALTHY and "did not return" in comp.message
        assert srv.runtime.watcher.component_health("state").status == HealthStatus.HEALTHY
        release.set()


def test_levels_come_from_component_details(client: voltorch.Client, flaky: Flaky) -> None:
    flaky.level = 3
    h = client.health(refresh=True)
    assert h.active_workflows == 3
    assert h.component("flaky").details["queue_depth"] == "6"
    m = client.metrics(["voltorch.workflows.active", "voltorch.coordination.queue_depth"])
    assert m.value("voltorch.workflows.active") == 3
    assert m.value("voltorch.coordination.queue_depth") == 6


def test_metrics_collected_event_every_interval(config: Config) -> None:
    srv = VoltorchServer(fast(config, metrics_interval=0.05))
    with srv:
        waiter = Waiter(srv)
        e = waiter.event("system.metrics.collected", count=2)[-1]
        assert e.data["process"]["memory_bytes"] > 0 and e.trace_id
