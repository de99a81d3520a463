"""Remote workers: a process in any language connected through CoordinationService.Connect.

A `WorkerSession` is one connection, in plain Python (the servicer translates protos): it queues
outgoing messages (assignments, cancels), takes incoming ones (results, progress, heartbeats) and
tracks the tasks in flight by (task_id, attempt), so a result for a superseded attempt, a cancelled
task or a repeated result is ignored. Closing a session fails its in-flight tasks with WORKER_LOST
(retryable), which the engine answers by re-dispatching them. `RemoteAgent` is the agent runtime the
engine sees: it forwards tasks to whichever session currently serves the agent id.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._ids import new_id
from .base import (
    Agent,
    AgentError,
    AgentOutput,
    AgentTask,
    CancelSignal,
    DoneCallback,
    TokenUsage,
    ToolSpec,
)


@dataclass(frozen=True)
class WorkerHello:
    agent_id: str = ""
    name: str = ""
    capabilities: tuple[str, ...] = ()
    max_concurrency: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    sdk_version: str = ""
    tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True)
class Assignment:
    task: AgentTask


@dataclass(frozen=True)
class CancelTaskMsg:
    task_id: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class TaskResultMsg:
    task_id: str
    attempt: int
    output: str = ""
    structured_output: Any = None
    error_code: str = ""
    error_message: str = ""
    error_retryable: bool = False
    failed: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage)


@dataclass(frozen=True)
class ProgressMsg:
    task_id: str
    attempt: int
    message: str = ""
    fraction: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatMsg:
    running_task_ids: tuple[str, ...] = ()


@dataclass
class _InFlight:
    attempt: int
    done: DoneCallback


class WorkerSession:
    """One Connect stream. Thread-safe; never calls out while holding its lock."""

    def __init__(
        self,
        agent_id: str,
        *,
        on_close: Callable[[WorkerSession], None],
        on_progress: Callable[[WorkerSession, ProgressMsg], None] | None = None,
        max_outbox: int = 10_000,
    ):
        self.id = new_id("wses")
        self.agent_id = agent_id
        self.created = time.time()
        self.last_seen = time.monotonic()
        self.last_seen_time = time.time()
        self._on_close = on_close
        self._on_progress = on_progress
        self._outbox: queue.Queue[Any] = queue.Queue(max_outbox)
        self._lock = threading.Lock()
        self._in_flight: dict[str, _InFlight] = {}
        self.closed = threading.Event()
        self.close_reason = ""
        self.close_kind = ""  # "replaced" | "timeout" | "disconnected" | "unregistered" | "shutdown"

    # -- engine side --------------------------------------------------------------------------------

    def assign(self, task: AgentTask, cancel: CancelSignal, done: DoneCallback) -> None:
        with self._lock:
            if not self.closed.is_set():
                self._in_flight[task.task_id] = _InFlight(task.attempt, done)
                self._outbox.put_nowait(Assignment(task))
                accepted = True
            else:
                accepted = False
        if not accepted:
            done(
                AgentError(
                    f"worker {self.agent_id} disconnected: {self.close_reason}",
                    retryable=True,
                    code="WORKER_LOST",
                )
            )
            return
        cancel.add_callback(lambda reason: self._cancel(task.task_id, task.attempt, reason))

    def _cancel(self, task_id: str, attempt: int, reason: str) -> None:
        with self._lock:
            entry = self._in_flight.get(task_id)
            if entry is None or entry.attempt != attempt:
                return
            del self._in_flight[task_id]
            if not self.closed.is_set():
                self._outbox.put_nowait(CancelTaskMsg(task_id, attempt, reason))

    # -- stream side --------------------------------------------------------------------------------

    def next_message(self, timeout: float) -> Any | None:
        """The next message to send, or None after `timeout` (or once closed and drained)."""
        try:
            return self._outbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def touch(self) -> None:
        self.last_seen = time.monotonic()
        self.last_seen_time = time.time()

    def receive(self, msg: Any) -> None:
        """Handle one worker message (any message counts as liveness)."""
        self.touch()
        if isinstance(msg, TaskResultMsg):
            with self._lock:
                entry = self._in_flight.get(msg.task_id)
                if entry is None or entry.attempt != msg.attempt:
                    return  # superseded, cancelled or repeated: acknowledged by silence
                del self._in_flight[msg.task_id]
            if msg.failed:
                outcome: Any = AgentError(
                    msg.error_message or "worker reported a failure",
                    code=msg.error_code or "WORKER_ERROR",
                    retryable=msg.error_retryable,
                )
            else:
                outcome = AgentOutput(msg.output, msg.structured_output, msg.usage)
            entry.done(outcome)
        elif isinstance(msg, ProgressMsg):
            with self._lock:
                entry = self._in_flight.get(msg.task_id)
                current = entry is not None and entry.attempt == msg.attempt
            if current and self._on_progress is not None:
                self._on_progress(self, msg)
        elif isinstance(msg, HeartbeatMsg):
            with self._lock:
                stale = [t for t in msg.running_task_ids if t not in self._in_flight]
                for t in stale:
                    self._outbox.put_nowait(CancelTaskMsg(t, 0, "the server no longer expects this task"))

    def close(self, reason: str, kind: str = "disconnected") -> None:
        """End the session: in-flight tasks fail with WORKER_LOST (retryable) and are re-dispatched."""
        with self._lock:
            if self.closed.is_set():
                return
            self.close_reason = reason
            self.close_kind = kind
            self.closed.set()
            lost, self._in_flight = list(self._in_flight.items()), {}
        try:
            self._outbox.put_nowait(None)  # wake the stream
        except queue.Full:
            pass
        try:
            self._on_close(self)  # first: the agent is offline before its tasks look for a new home
        finally:
            for _task_id, entry in lost:
                entry.done(
                    AgentError(f"worker {self.agent_id} lost: {reason}", retryable=True, code="WORKER_LOST")
                )


class RemoteAgent(Agent):
    """The engine's handle on a remote agent id; tasks go to its current session."""

    kind = "remote"
    threaded = False

    def __init__(self) -> None:
        self.session: WorkerSession | None = None

    @property
    def connected(self) -> bool:
        s = self.session
        return s is not None and not s.closed.is_set()

    def start(self, task: AgentTask, cancel: CancelSignal, done: DoneCallback) -> None:
        s = self.session
        if s is None:
            done(AgentError("worker not connected", retryable=True, code="WORKER_LOST"))
            return
        s.assign(task, cancel, done)

    def close(self) -> None:
        s = self.session
        if s is not None:
            s.close("agent unregistered", "unregistered")
