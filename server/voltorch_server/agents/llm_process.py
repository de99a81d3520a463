"""LLM calls in a child process: the `openai` client's work for each call (building the request, httpx and
h11 sending it, reading the stream, assembling the reply) runs outside the server's interpreter.

Why: with a hundred calls in flight the server is bound by one core, its GIL, and more than half of its
instructions per LLM call were the client's (bench/README, "The whole server's instructions per LLM
call"). In a child process that work runs on the machine's other core and no longer delays the steps,
events and RPCs of the server. The limiter, retries, spans and metrics stay in the server: only the
HTTP exchange of one attempt crosses.

The child (`python -m voltorch_server.agents.llm_worker`) runs each call on a thread of its own through
InProcessCalls. The server sends it one frame per call and per cancel and reads, on one reader thread,
one frame per piece of live text and one per answer, handed to the agent thread that waits for it. The
child exits when its stdin closes (the server stopped or died). If it dies, the calls in flight fail as
connection errors, which the agent retries as any, and the next call starts a new child.

Frames are a 4-byte length and a pickle: both ends are this package, in processes the server started.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from queue import SimpleQueue
from typing import IO, TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:
    import openai  # imported where it is used (see llm.py's docstring)

from .. import cpus
from ._values import AgentError, CancelSignal
from .llm_clients import Answer, AnswerStopped, CallRequest
from .llm_stream import LiveText

log = logging.getLogger("voltorch.agents.llm")

_LENGTH = struct.Struct("<I")
# The request the rebuilt `openai` errors name (they need one; the URL is not known here).
_REQUEST = httpx2.Request("POST", "http://llm-call-process/chat/completions")

# Server -> child: ("call", id, CallRequest), ("cancel", id, reason).
# Child -> server: ("text", id, text), ("done", id, headers, reply, error, last_text), ("error", id, *what),
# ("log", 0, level, logger name, formatted record);
# errors travel as describe_error's plain values (an exception's pickle keeps only its message).
# Server-side only: ("gone", id, why) wakes a call waiting on a child that is gone.


def frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def write_frame(out: IO[bytes], message: tuple[Any, ...]) -> None:
    out.write(frame(message))
    out.flush()


def read_frame(inp: IO[bytes]) -> tuple[Any, ...] | None:
    """The next frame, or None at the end of the stream."""
    head = inp.read(4)
    if len(head) < 4:
        return None
    (size,) = _LENGTH.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        return None
    message: tuple[Any, ...] = pickle.loads(data)
    return message


# -- errors across the pipe -----------------------------------------------------------------------------


@cache
def _status_errors() -> dict[int, type[openai.APIStatusError]]:
    """What `openai` raises for a status, as its client maps them (the table is openai's
    `_make_status_error`)."""
    import openai

    return {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }


def _connection_error(message: str) -> Exception:
    """The error the `openai` client raises when it gets no answer: a call that is retried."""
    import openai

    return openai.APIConnectionError(message=message, request=_REQUEST)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the server reads from an answer (Retry-After, x-ratelimit-*), lower-cased as httpx's."""
    return {
        k: v
        for k, v in headers.items()
        if k.startswith("x-ratelimit-") or k.startswith("retry-after")  # incl. retry-after-ms
    }


def describe_error(exc: BaseException) -> tuple[Any, ...]:
    """An exception of a call as plain values (rebuilt by `rebuild_error`)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return ("status", exc.status_code, kept_headers(exc.response.headers), exc.message, exc.body)
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is one
        return ("timeout",)
    if isinstance(exc, openai.APIConnectionError):
        return ("connection", exc.message)
    if isinstance(exc, AnswerStopped):  # before AgentError: it is one
        error = None if exc.error is None else describe_error(exc.error)
        return ("stopped", exc.message, exc.code, exc.retryable, kept_headers(exc.headers), error)
    if isinstance(exc, AgentError):
        return ("agent", exc.message, exc.code, exc.retryable)
    if isinstance(exc, ValueError):
        return ("value", str(exc))
    return ("other", type(exc).__name__, str(exc))


def rebuild_error(what: tuple[Any, ...]) -> Exception:
    """The exception `describe_error` described, as the `openai` client would have raised it."""
    import openai

    kind = what[0]
    if kind == "status":
        status, headers, message, body = what[1:]
        response = httpx2.Response(status, headers=headers, request=_REQUEST)
        cls = _status_errors().get(
            status, openai.InternalServerError if status >= 500 else openai.APIStatusError
        )
        return cls(message, response=response, body=body)
    if kind == "timeout":
        return openai.APITimeoutError(request=_REQUEST)
    if kind == "connection":
        return _connection_error(what[1])
    if kind == "stopped":
        error = None if what[5] is None else rebuild_error(what[5])
        return AnswerStopped(what[1], what[4], code=what[2], retryable=what[3], error=error)
    if kind == "agent":
        return AgentError(what[1], code=what[2], retryable=what[3])
    if kind == "value":
        return ValueError(what[1])
    return LlmProcessError(what[1], what[2])


def _agent_error(what: tuple[Any, ...]) -> AgentError:
    error = rebuild_error(what)
    return error if isinstance(error, AgentError) else AgentError(str(error), code="INVALID_OUTPUT")


class LlmProcessError(Exception):
    """A failure of a call in the LLM call process that is none of the `openai` client's (an httpx error
    mid-stream, say): `type_name` is the original's, which the agent reports as the error's type."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


# -- the server's side ----------------------------------------------------------------------------------

# A child that exits before it answered anything, twice or more in a row, is started again only after
# RESTART_HOLD seconds, doubled each time up to MAX_RESTART_HOLD: calls fail (and are retried) meanwhile
# instead of each starting a process that dies as well.
RESTART_HOLD = 1.0
MAX_RESTART_HOLD = 30.0


class ProcessCalls:
    """LlmCalls that run in one child process, started by warm() or the first call, and again after it
    dies."""

    def __init__(self, command: list[str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """`command`: the child's command line (default: this Python, `-m voltorch_server.agents.llm_worker`)."""
        self.command = command or [sys.executable, "-m", "voltorch_server.agents.llm_worker"]
        self.clock = clock
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self.started = 0  # children started (a restart after a death counts)
        self._failed_starts = 0  # children in a row that exited before answering anything
        self._hold_until = 0.0
        self._last_exit = ""

    def call(self, request: CallRequest, task: LiveText, cancel: CancelSignal) -> Answer:
        """As InProcessCalls.call. A cancel reaches the call in the child, which stops reading the answer at
        its next piece, as on the agent's own thread; until the child says the call is over it counts
        against the endpoint's limit, so the wait here ends with the child's answer, error or death."""
        child = self._running()
        if isinstance(child, str):
            raise _connection_error(child)
        call_id = next(self._ids)
        replies: SimpleQueue[tuple[Any, ...]] = SimpleQueue()
        child.register(call_id, replies)

        def cancelled(reason: str) -> None:
            child.send(("cancel", call_id, reason))

        try:
            child.send(("call", call_id, request))
            cancel.add_callback(cancelled)  # after the call's frame: a cancel set already follows it
            while True:
                message = replies.get()
                kind = message[0]
                if kind == "text":
                    if not cancel.is_set():
                        task.delta(message[2])
                elif kind == "done":
                    _, _, headers, reply, error, last = message
                    if cancel.is_set():  # the child read the answer before the cancel reached it
                        raise AnswerStopped(f"cancelled: {cancel.reason}", headers, code="CANCELLED")
                    if last:
                        task.delta(last, last=True)
                    return Answer(headers, reply, None if error is None else _agent_error(error))
                elif kind == "error":
                    raise rebuild_error(message[2:])
                else:  # "gone"
                    raise _connection_error(message[2])
        finally:
            cancel.remove_callback(cancelled)
            child.unregister(call_id)

    def warm(self) -> None:
        """Start the child now, so the first call does not wait for it (its imports, the `openai` client's
        mostly, take ~0.5 s of CPU)."""
        try:
            refused = self._running()
        except Exception:  # no process could be started
            log.warning("the LLM call process did not start; the first call tries again", exc_info=True)
            return
        if isinstance(refused, str):  # closed, or held after failed starts
            log.warning("the LLM call process did not start (%s); the first call tries again", refused)

    def describe(self) -> str:
        with self._lock:
            child, failed, last = self._child, self._failed_starts, self._last_exit
        if child is not None and not child.gone:
            return (
                f"LLM call process pid {child.proc.pid}, {child.in_flight()} calls in flight,"
                f" started {self.started}x"
            )
        if failed:
            return f"LLM call process not running: {failed} starts in a row failed, last: {last}"
        return "LLM call process not running (starts with the first LLM agent or call)"

    def _running(self) -> _Child | str:
        """The child, started if none runs; or why none may start now, for the caller to raise once the lock
        is released (its error is `openai`'s, which may be the server's first import of it)."""
        with self._lock:
            if self._closed:
                return "the server is stopping"
            child = self._child
            if child is not None and child.gone:
                self._child = None
                self._last_exit = child.exit
                if child.answered:
                    self._failed_starts = 0
                else:
                    self._failed_starts += 1
                    if self._failed_starts > 1:
                        hold = min(MAX_RESTART_HOLD, RESTART_HOLD * 2 ** (self._failed_starts - 2))
                        self._hold_until = self.clock() + hold
            if self._child is None:
                wait = self._hold_until - self.clock()
                if wait > 0:
                    return (
                        f"{self._last_exit} before answering a call, {self._failed_starts} times in a"
                        f" row; the next start in {wait:.1f}s"
                    )
                self._child = _Child(self.command)
                self.started += 1
            return self._child

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child: it exits when its stdin closes, or is killed after `timeout` seconds."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            child.stop(timeout)


class _Child:
    """One child process: its pipes, the threads that write and read them, and the calls waiting on it.
    Frames to the child go through one writer thread, so no caller (nor a cancel, on whatever thread
    sets it) ever blocks on the pipe, even when the child stops reading."""

    def __init__(self, command: list[str]) -> None:
        # The child imports what this process imports, from where it does (a test's or a checkout's path).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **cpus.child_env()}
        # In a process group of its own: a Ctrl-C or a group's SIGTERM is the server's to handle; the child
        # exits when the server closes its stdin, or dies.
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, process_group=0
        )
        self._outbox: SimpleQueue[bytes | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._waiting: dict[int, SimpleQueue[tuple[Any, ...]]] = {}
        self.gone = False
        self.answered = False  # it has sent a frame
        self.exit = ""  # how it ended, once gone
        self._writer = threading.Thread(target=self._write, name="llm-process-writer", daemon=True)
        self._reader = threading.Thread(target=self._read, name="llm-process-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    def register(self, call_id: int, replies: SimpleQueue[tuple[Any, ...]]) -> None:
        with self._lock:
            gone = self.gone
            if not gone:
                self._waiting[call_id] = replies
        if gone:  # raised once the lock is released, as _running's refusals
            raise _connection_error(self.exit)

    def unregister(self, call_id: int) -> None:
        with self._lock:
            self._waiting.pop(call_id, None)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._waiting)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue a frame for the child (a child gone meanwhile fails the calls waiting on it instead)."""
        self._outbox.put(frame(message))

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (data := self._outbox.get()) is not None:
                stdin.write(data)
                if self._outbox.empty():  # what queued meanwhile goes in one flush
                    stdin.flush()
        except (OSError, ValueError):
            pass  # the child is gone: the reader tells the calls
        finally:
            try:
                stdin.close()  # the child exits
            except OSError:
                pass

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while (message := read_frame(stdout)) is not None:
                if message[0] == "log":  # a record of the child's, where the server's own records go
                    _, _, level, name, text = message
                    logging.getLogger(name).log(level, "%s (LLM call process pid %d)", text, self.proc.pid)
                    continue
                self.answered = True  # a call's frame: it serves (a restart after it dies is not held)
                with self._lock:
                    replies = self._waiting.get(message[1])
                if replies is not None:  # else a call given up since (its waiter is gone)
                    replies.put(message)
        except Exception:
            log.exception("reading the LLM call process failed; it is stopped")
            self.proc.kill()
        finally:
            try:
                code: int | None = self.proc.wait(5.0)
            except subprocess.TimeoutExpired:  # its stdout closed, the process lives on: not one to keep
                self.proc.kill()
                code = self.proc.wait()
            self.exit = f"the LLM call process exited (exit code {code})"
            with self._lock:
                self.gone = True
                waiting, self._waiting = list(self._waiting.items()), {}
            for call_id, replies in waiting:
                replies.put(("gone", call_id, self.exit))
            self._outbox.put(None)  # the writer ends
            if waiting:
                log.warning("%s with %d calls in flight; they fail and are retried", self.exit, len(waiting))

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits) and wait for it; killed if it does not exit in time (a child that
        stopped reading its stdin included: the writer may be stuck on the pipe)."""
        self._outbox.put(None)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(timeout)
