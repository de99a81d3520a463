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
from collections.abc import Mapping
from queue import SimpleQueue
from typing import IO, Any

import httpx2
import openai

from .base import AgentError, AgentTask, CancelSignal
from .llm_clients import Answer, CallRequest

log = logging.getLogger("voltorch.agents.llm")

_LENGTH = struct.Struct("<I")
# The request the rebuilt `openai` errors name (they need one; the URL is not known here).
_REQUEST = httpx2.Request("POST", "http://llm-call-process/chat/completions")

# Server -> child: ("call", id, CallRequest), ("cancel", id, reason).
# Child -> server: ("text", id, text), ("done", id, headers, reply, error, last_text), ("error", id, *what);
# errors travel as describe_error's plain values (an exception's pickle keeps only its message).
# Server-side only: ("cancelled", id) and ("gone", id, why) wake a waiting call.


def write_frame(out: IO[bytes], message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)) + data)
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

# What `openai` raises for a status, as its client maps them (the table is openai's `_make_status_error`).
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the server reads from an answer (Retry-After, x-ratelimit-*), lower-cased as httpx's."""
    return {
        k: v
        for k, v in headers.items()
        if k.startswith("x-ratelimit-") or k.startswith("retry-after")  # incl. retry-after-ms
    }


def describe_error(exc: BaseException) -> tuple[Any, ...]:
    """An exception of a call as plain values (rebuilt by `rebuild_error`)."""
    if isinstance(exc, openai.APIStatusError):
        return ("status", exc.status_code, kept_headers(exc.response.headers), exc.message, exc.body)
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is one
        return ("timeout",)
    if isinstance(exc, openai.APIConnectionError):
        return ("connection", exc.message)
    if isinstance(exc, AgentError):
        return ("agent", exc.message, exc.code, exc.retryable)
    if isinstance(exc, ValueError):
        return ("value", str(exc))
    return ("other", f"{type(exc).__name__}: {exc}")


def rebuild_error(what: tuple[Any, ...]) -> Exception:
    """The exception `describe_error` described, as the `openai` client would have raised it."""
    kind = what[0]
    if kind == "status":
        status, headers, message, body = what[1:]
        response = httpx2.Response(status, headers=headers, request=_REQUEST)
        cls = _STATUS_ERRORS.get(
            status, openai.InternalServerError if status >= 500 else openai.APIStatusError
        )
        return cls(message, response=response, body=body)
    if kind == "timeout":
        return openai.APITimeoutError(request=_REQUEST)
    if kind == "connection":
        return openai.APIConnectionError(message=what[1], request=_REQUEST)
    if kind == "agent":
        return AgentError(what[1], code=what[2], retryable=what[3])
    if kind == "value":
        return ValueError(what[1])
    return LlmProcessError(what[1])


def _agent_error(what: tuple[Any, ...]) -> AgentError:
    error = rebuild_error(what)
    return error if isinstance(error, AgentError) else AgentError(str(error), code="INVALID_OUTPUT")


class LlmProcessError(Exception):
    """An unexpected failure of a call in the LLM call process (its message names the original type)."""


# -- the server's side ----------------------------------------------------------------------------------


class ProcessCalls:
    """LlmCalls that run in one child process, started on the first call (and again after it dies)."""

    def __init__(self, command: list[str] | None = None) -> None:
        """`command`: the child's command line (default: this Python, `-m voltorch_server.agents.llm_worker`)."""
        self.command = command or [sys.executable, "-m", "voltorch_server.agents.llm_worker"]
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self.started = 0  # children started (a restart after a death counts)

    def call(self, request: CallRequest, task: AgentTask, cancel: CancelSignal) -> Answer:
        child = self._running()
        call_id = next(self._ids)
        replies: SimpleQueue[tuple[Any, ...]] = SimpleQueue()
        child.register(call_id, replies)
        try:
            child.send(("call", call_id, request))

            def cancelled(reason: str) -> None:
                replies.put(("cancelled", call_id))
                child.send_quietly(("cancel", call_id, reason))

            cancel.add_callback(cancelled)
            while True:
                message = replies.get()
                kind = message[0]
                if kind == "text":
                    task.delta(message[2])
                elif kind == "done":
                    _, _, headers, reply, error, last = message
                    if last:
                        task.delta(last, last=True)
                    return Answer(headers, reply, None if error is None else _agent_error(error))
                elif kind == "error":
                    raise rebuild_error(message[2:])
                elif kind == "cancelled":
                    raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED")
                else:  # "gone"
                    raise openai.APIConnectionError(message=message[2], request=_REQUEST)
        finally:
            child.unregister(call_id)

    def warm(self) -> None:
        """Start the child now, so the first call does not wait for it (its imports take ~1 s of CPU)."""
        try:
            self._running()
        except openai.APIConnectionError:
            pass  # closed

    def describe(self) -> str:
        with self._lock:
            child = self._child
        if child is None or child.gone:
            return "LLM call process not running (starts with the first call)"
        return f"LLM call process pid {child.proc.pid}, {child.in_flight()} calls in flight, started {self.started}x"

    def _running(self) -> _Child:
        with self._lock:
            if self._closed:
                raise openai.APIConnectionError(message="the server is stopping", request=_REQUEST)
            if self._child is None or self._child.gone:
                self._child = _Child(self.command)
                self.started += 1
            return self._child

    def close(self) -> None:
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            child.stop()


class _Child:
    """One child process: its pipes, its reader thread and the calls waiting on it."""

    def __init__(self, command: list[str]) -> None:
        # The child imports what this process imports, from where it does (a test's or a checkout's path).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._write = threading.Lock()
        self._lock = threading.Lock()
        self._waiting: dict[int, SimpleQueue[tuple[Any, ...]]] = {}
        self.gone = False
        self._reader = threading.Thread(target=self._read, name="llm-process-reader", daemon=True)
        self._reader.start()

    def register(self, call_id: int, replies: SimpleQueue[tuple[Any, ...]]) -> None:
        with self._lock:
            if self.gone:
                raise openai.APIConnectionError(message="the LLM call process exited", request=_REQUEST)
            self._waiting[call_id] = replies

    def in_flight(self) -> int:
        with self._lock:
            return len(self._waiting)

    def unregister(self, call_id: int) -> None:
        with self._lock:
            self._waiting.pop(call_id, None)

    def send(self, message: tuple[Any, ...]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            with self._write:
                write_frame(stdin, message)
        except (OSError, ValueError) as exc:  # a closed pipe: the child is gone
            raise openai.APIConnectionError(
                message=f"the LLM call process is gone ({exc})", request=_REQUEST
            ) from None

    def send_quietly(self, message: tuple[Any, ...]) -> None:
        try:
            self.send(message)
        except openai.APIConnectionError:
            pass

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while (message := read_frame(stdout)) is not None:
                with self._lock:
                    replies = self._waiting.get(message[1])
                if replies is not None:  # else a call given up (cancelled) since
                    replies.put(message)
        except Exception:
            log.exception("reading the LLM call process failed")
        finally:
            code = self.proc.poll()
            why = "the LLM call process exited" + ("" if code is None else f" (exit code {code})")
            with self._lock:
                self.gone = True
                waiting, self._waiting = list(self._waiting.items()), {}
            for call_id, replies in waiting:
                replies.put(("gone", call_id, why))
            if waiting:
                log.warning("%s with %d calls in flight; they fail and are retried", why, len(waiting))

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits) and wait for it; killed if it does not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout)
