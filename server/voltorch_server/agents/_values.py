"""The plain values of an agent's run and of its model calls: the cancel signal, the error a task fails
with, the tokens it used, a model's reply. Only the standard library here: the LLM call process
(llm_worker) imports this and not base.py, whose AgentTask brings the SDK (its Priority) and with it grpc
and protobuf. base.py is these values' face for the rest of the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from math import copysign
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    """Tokens in (prompt) and out (completion), their cost in USD and the model calls that answered."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost": round(self.cost, 9),
            "llm_calls": self.llm_calls,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TokenUsage:
        d = d or {}
        usage = (
            int(d.get("prompt_tokens", 0)),
            int(d.get("completion_tokens", 0)),
            int(d.get("total_tokens", 0)),
            float(d.get("cost", 0.0)),
            int(d.get("llm_calls", 0)),
        )
        if usage == _ZERO and copysign(1.0, usage[3]) > 0 and cls is TokenUsage:  # none used (not -0.0)
            return NO_USAGE
        return cls(*usage)

    def __add__(self, other: TokenUsage) -> TokenUsage:
        # Adding nothing gives an equal value: the same (frozen) object. Most steps use no tokens.
        if other is NO_USAGE and type(self) is TokenUsage:
            return self
        if self is NO_USAGE and type(other) is TokenUsage:
            return other
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cost + other.cost,
            self.llm_calls + other.llm_calls,
        )


NO_USAGE = TokenUsage()  # the usage of what used nothing: one shared value (TokenUsage is frozen)
_ZERO = (0, 0, 0, 0.0, 0)


class AgentError(Exception):
    """A task failed. `code` is a stable UPPER_SNAKE id; `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool = False, code: str = "AGENT_ERROR"):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.usage = NO_USAGE  # what the task used before failing (a tool loop's model calls)


class Latch:
    """`threading.Event`'s set / is_set / wait, the Event (a Condition and its lock, ~2 µs to make) made
    only once a thread waits: a workflow step makes a few (a task's cancel signal, its coordination's
    `done`) and almost none is ever waited for."""

    __slots__ = ("_flag", "_event", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._lock:
            self._flag = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        with self._lock:
            if self._flag:
                return True
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        return event.wait(timeout)


class CancelSignal:
    """Set once when the engine gives up on a task (cancel, timeout, re-dispatch, shutdown)."""

    def __init__(self) -> None:
        self._event = Latch()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []
        self.reason = ""

    def is_set(self) -> bool:
        return self._event._flag

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def set(self, reason: str) -> None:
        with self._lock:
            if self._event._flag:
                return
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(reason)
            except Exception:  # one agent's bug must not break cancelling
                pass

    def add_callback(self, fn: Callable[[str], None]) -> None:
        """Call fn(reason) when set (at once if already set)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn(self.reason)

    def remove_callback(self, fn: Callable[[str], None]) -> None:
        """Forget fn (added by add_callback for something that is over); nothing if it is not there."""
        with self._lock:
            try:
                self._callbacks.remove(fn)
            except ValueError:
                pass


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One model turn: text, or tool calls (or both), and what the turn used."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: TokenUsage = field(default_factory=TokenUsage)
