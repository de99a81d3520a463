"""voltorch.Worker: run a remote agent from a Python function.

    def handle(task: voltorch.WorkerTask) -> str | dict:
        return {"answer": task.text.upper()}

    voltorch.Worker(client, "upper-1", ["text"], handle, max_concurrency=4).run()

The worker opens CoordinationService.Connect, says hello (id, capabilities), runs each assigned task
in its own thread (at most max_concurrency at once), sends heartbeats listing its running tasks, and
reports one result per assignment. When the stream breaks it reconnects with backoff under the same
id; the server re-dispatches whatever was in flight. It stops for good when the agent is unregistered
or another worker connects with the same id. stop() ends the session gracefully.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import grpc

from voltorch.v1 import coordination_pb2 as pb

from ._tracing import continue_trace
from ._version import __version__
from .errors import VoltorchError, from_rpc_error
from .wire import (
    CancelTask,
    TaskAssignment,
    TaskError,
    TaskProgress,
    TaskResult,
    ToolSpec,
    WorkerHeartbeat,
    WorkerHello,
    WorkerWelcome,
    server_message_from_pb,
    worker_message_pb,
)

log = logging.getLogger("voltorch.worker")

SDK_VERSION = f"voltorch-python/{__version__}"
# Sessions the server ended on purpose: the agent was unregistered, or another process took over its id.
_FINAL = frozenset({"SESSION_UNREGISTERED", "SESSION_REPLACED"})


class TaskFailed(Exception):
    """Raise from a handler to fail the task with a code; retryable=False stops workflow retries."""

    def __init__(self, message: str, *, code: str = "TASK_FAILED", retryable: bool = False):
        super().__init__(message)
        self.message, self.code, self.retryable = message, code, retryable


@dataclass(frozen=True)
class WorkerTask(TaskAssignment):
    """One assignment, as the handler sees it (text, context, deadline, traceparent… from the wire)."""

    cancelled: threading.Event = field(default_factory=threading.Event)  # set on CancelTask or stop()
    _send: Callable[[pb.WorkerMessage], None] | None = field(default=None, repr=False)

    def progress(
        self, message: str, fraction: float | None = None, details: dict[str, Any] | None = None
    ) -> None:
        """Report progress (published as a coordination.task.progress event)."""
        if self._send is not None:
            progress = TaskProgress(self.task_id, self.attempt, message, fraction, dict(details or {}))
            self._send(worker_message_pb(progress))  # written here: bad details fail the caller


Handler = Callable[[WorkerTask], Any]


def _result(task: WorkerTask, value: Any, duration: float) -> TaskResult:
    """A handler's value (text, JSON, or an exception) as the task's result."""
    if isinstance(value, TaskFailed):
        error = TaskError(value.code, value.message[:4096], value.retryable)
        return TaskResult(task.task_id, task.attempt, error=error, duration=duration)
    if isinstance(value, BaseException):
        error = TaskError("HANDLER_ERROR", f"{type(value).__name__}: {value}"[:4096], False)
        return TaskResult(task.task_id, task.attempt, error=error, duration=duration)
    if value is None or isinstance(value, str):
        return TaskResult(task.task_id, task.attempt, output=value or "", duration=duration)
    output = json.dumps(value, indent=2, default=str)
    return TaskResult(
        task.task_id, task.attempt, output=output, structured_output=json.loads(output), duration=duration
    )


class Worker:
    def __init__(
        self,
        client: Any,
        agent_id: str,
        capabilities: Sequence[str],
        handler: Handler,
        *,
        name: str = "",
        max_concurrency: int = 1,
        labels: dict[str, str] | None = None,
        reconnect: bool = True,
        max_backoff: float = 5.0,
        tools: Sequence[ToolSpec] = (),
    ):
        """`tools`: functions this worker offers to tool-calling LLM agents; a call arrives as a task
        whose context is {"tool": name, "arguments": {...}}."""
        self.client = client
        self.tools = list(tools)
        self.agent_id = agent_id
        self.capabilities = list(capabilities)
        self.handler = handler
        self.name = name
        self.max_concurrency = max(1, max_concurrency)
        self.labels = dict(labels or {})
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.session_id = ""
        self.connected = threading.Event()  # set while a session is open (after the welcome)
        self.ended: VoltorchError | None = None  # why run() returned on its own (unregistered / replaced)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, WorkerTask] = {}
        self._call: Any = None
        self._outbox: queue.Queue[pb.WorkerMessage | None] | None = None
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix=f"worker-{agent_id}")

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve tasks until stop(); reconnects after a broken stream (unless reconnect=False)."""
        backoff = 0.1
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                    backoff = 0.1
                except ValueError as err:  # grpc: "Cannot invoke RPC: Channel closed!" — the client is gone
                    log.info("worker %s: %s; stopping", self.agent_id, err)
                    break
                except grpc.RpcError as err:
                    exc = from_rpc_error(err)
                    if self._stop.is_set():
                        break
                    if exc.reason in _FINAL:
                        log.warning("worker %s: %s; not reconnecting", self.agent_id, exc.message)
                        self.ended = exc
                        break
                    if not self.reconnect:
                        raise exc from None
                    log.warning(
                        "worker %s: stream ended (%s); reconnecting in %.1fs", self.agent_id, exc, backoff
                    )
                if not self.reconnect or self._stop.wait(backoff):
                    break
                backoff = min(self.max_backoff, backoff * 2)
        finally:
            self.connected.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def start(self) -> Worker:
        """run() in a background thread; returns self."""
        self._thread = threading.Thread(target=self.run, name=f"worker-{self.agent_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the session gracefully (the server re-dispatches unfinished tasks) and stop."""
        self._stop.set()
        with self._lock:
            for t in self._running.values():
                t.cancelled.set()
        outbox, call_ = self._outbox, self._call
        if outbox is not None:
            outbox.put(None)  # half-close: a graceful disconnect
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive() and call_ is not None:
                call_.cancel()
                self._thread.join(timeout)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one session ----------------------------------------------------------------------------

    def _session(self) -> None:
        outbox: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
        hello = worker_message_pb(
            WorkerHello(
                agent_id=self.agent_id,
                name=self.name,
                capabilities=tuple(self.capabilities),
                max_concurrency=self.max_concurrency,
                labels=self.labels,
                sdk_version=SDK_VERSION,
                tools=tuple(self.tools),
            )
        )
        outbox.put(hello)

        def requests() -> Iterator[pb.WorkerMessage]:
            while True:
                m = outbox.get()
                if m is None:
                    return
                yield m

        call_ = self.client.stubs.coordination.Connect(requests())
        self._call, self._outbox = call_, outbox
        if self._stop.is_set():
            outbox.put(None)
        beat = threading.Event()
        try:
            for m in call_:
                msg = server_message_from_pb(m)
                if isinstance(msg, WorkerWelcome):
                    self.agent_id = msg.agent_id or self.agent_id
                    self.session_id = msg.session_id
                    interval = msg.heartbeat_interval or 5.0
                    threading.Thread(
                        target=self._heartbeats,
                        args=(outbox, interval, beat),
                        name="worker-heartbeat",
                        daemon=True,
                    ).start()
                    self.connected.set()
                elif isinstance(msg, TaskAssignment):
                    self._assign(msg, outbox)
                elif isinstance(msg, CancelTask):
                    with self._lock:
                        t = self._running.get(msg.task_id)
                    if t is not None and (msg.attempt in (0, t.attempt)):
                        t.cancelled.set()
        finally:
            self.connected.clear()
            beat.set()
            outbox.put(None)
            with self._lock:
                for t in self._running.values():
                    t.cancelled.set()
                self._running.clear()

    def _heartbeats(self, outbox: queue.Queue, interval: float, stop: threading.Event) -> None:
        while not stop.wait(interval):
            with self._lock:
                running = list(self._running)
            outbox.put(worker_message_pb(WorkerHeartbeat(tuple(running), datetime.now(UTC))))

    def _assign(self, a: TaskAssignment, outbox: queue.Queue) -> None:
        task = WorkerTask(**{f.name: getattr(a, f.name) for f in fields(a)}, _send=outbox.put)
        with self._lock:
            self._running[task.task_id] = task
        self._pool.submit(self._run_task, task, outbox)

    def _run_task(self, task: WorkerTask, outbox: queue.Queue) -> None:
        started = time.monotonic()
        try:
            with continue_trace(task.traceparent, "worker.task", {"voltorch.task_id": task.task_id}):
                value: Any = self.handler(task)
        except Exception as exc:  # reported to the server as the task's error
            if not isinstance(exc, TaskFailed):
                log.exception("worker %s: handler failed on %s", self.agent_id, task.task_id)
            value = exc
        with self._lock:
            current = self._running.get(task.task_id) is task
            if current:
                del self._running[task.task_id]
        if current and not task.cancelled.is_set():
            duration = time.monotonic() - started
            try:
                msg = worker_message_pb(_result(task, value, duration))
            except (TypeError, ValueError) as exc:
                not_json = TaskFailed(
                    f"handler returned a value that is not JSON: {exc}", code="INVALID_OUTPUT"
                )
                msg = worker_message_pb(_result(task, not_json, duration))
            outbox.put(msg)
