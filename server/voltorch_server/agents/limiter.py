"""One limiter per LLM endpoint (base URL + key + model), shared by every LLM agent that calls it.

Why: limits belong to the endpoint, not to each agent. A vLLM server that serves 256 requests at once
should see 256, and a key with a low rate limit should see fewer calls rather than a storm of 429s that
every agent retries on its own.

How it decides (TCP-style congestion control on calls in flight):

* a **window** of calls in flight, never above `max_in_flight`; it starts at `initial_window` and, while
  demand fills it, grows by half a call per success (slow start: x1.5 per round trip) until the first
  overload, then by one call per window of successes (additive increase);
* an **overload** (429, 503, timeout) sets it to `backoff` times the calls that were in flight
  (multiplicative decrease), once per round trip; each call granted before that cut that fails too
  lowers the estimate by one (a slow-start overshoot is undone at once, not over many cuts). Next to
  that estimate the window grows PROBE_ROUNDS times slower, so an endpoint with a hard capacity sees a
  429 now and then, not every other round trip;
* a `Retry-After` / `retry-after-ms` (or an `x-ratelimit-remaining-*: 0` with its reset) holds every new
  call of the endpoint until then;
* optional **requests/tokens per minute** buckets (refilled continuously, bursts of 6 s of quota);
* calls waiting here are granted in coordination priority order (critical first) with aging, as in the
  coordination queue, where the engine keeps most of them (`has_room`), so low priority never starves.

It also keeps what GetHealth and the metrics show: calls in flight, window, queue depth, 429s and the
waits they caused, and the consecutive failures that make the endpoint DEGRADED.

Plain Python, no grpc; the clock is injectable so the AIMD rules are tested without waiting.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..components import AgingQueue

MAX_HOLD = 60.0  # longest Retry-After / rate-limit reset honoured (seconds)
BURST_SECONDS = 6.0  # a per-minute bucket holds this many seconds of quota
SLOW_START_STEP = 0.5  # growth per success before the first overload: x1.5 per round trip (overshoot <= 50%)
PROBE_ROUNDS = 16  # near the last overload point the window grows one call per this many round trips


class Outcome(StrEnum):
    OK = "ok"
    THROTTLED = "throttled"  # 429: the endpoint asks for fewer calls
    OVERLOADED = "overloaded"  # 503 / timeout: the endpoint is saturated
    FAILED = "failed"  # anything else (connection error, 5xx, auth): no window change, counts for health
    ABANDONED = "abandoned"  # the caller gave up (its own deadline): says nothing about the endpoint


@dataclass(frozen=True)
class LimitSettings:
    """Limits of one endpoint (Config: llm_max_in_flight, llm_initial_window, ...)."""

    max_in_flight: int = 256
    initial_window: int = 32
    min_window: int = 1
    backoff: float = 0.9  # window multiplier on an overload
    requests_per_minute: float = 0.0  # 0 = no limit
    tokens_per_minute: float = 0.0  # 0 = no limit
    aging: float = 30.0  # waiting this long counts as one priority level
    degraded_after: int = 5  # consecutive failed calls that make the endpoint DEGRADED

    def checked(self) -> LimitSettings:
        if self.max_in_flight < 1:
            raise ValueError(f"llm_max_in_flight must be at least 1, got {self.max_in_flight}")
        if not 0 < self.backoff < 1:
            raise ValueError(f"llm_backoff must be between 0 and 1 (exclusive), got {self.backoff}")
        if self.requests_per_minute < 0 or self.tokens_per_minute < 0:
            raise ValueError("llm_requests_per_minute and llm_tokens_per_minute must not be negative")
        return self


class Cancel(Protocol):
    """What acquire() needs of a cancel signal (agents.base.CancelSignal)."""

    def is_set(self) -> bool: ...

    def add_callback(self, fn: Callable[[str], None]) -> None: ...


class LimitCancelled(Exception):
    """acquire() gave up: the call was cancelled, its deadline passed, or the limiter was reset."""


class LimitReset(LimitCancelled):
    """acquire() gave up because the limiter was reset: ask the registry for the endpoint's new one."""


@dataclass(frozen=True)
class EndpointSnapshot:
    endpoint: str  # "model @ host (key fingerprint)": never the key itself
    model: str
    base_url: str
    in_flight: int
    window: float
    max_in_flight: int
    queue_depth: int
    peak_in_flight: int
    calls: int
    throttled: int  # 429 answers
    overloaded: int  # 503 answers and timeouts
    failures: int
    throttle_wait: float  # seconds of waiting caused by throttling (retry delays, holds)
    queue_wait: float  # seconds calls spent waiting for the window
    consecutive_failures: int
    last_error: str
    held_for: float  # seconds until new calls may start again (Retry-After, rate-limit reset)
    degraded: bool


class _Bucket:
    """A token bucket of `per_minute`, holding BURST_SECONDS of quota; may go negative (debt)."""

    def __init__(self, per_minute: float, now: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_SECONDS)
        self.level = self.capacity
        self.at = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (a call larger than the bucket waits for a full one)."""
        need = min(amount, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate


@dataclass(eq=False)
class _Waiter:
    priority: int
    tokens: int
    event: threading.Event = field(default_factory=threading.Event)
    permit: Permit | None = None


@dataclass(eq=False)
class Permit:
    """One call in flight. Release it exactly once with the outcome (idempotent)."""

    limiter: EndpointLimiter
    epoch: int
    tokens: int
    number: int  # grants made before this one, +1
    released: bool = False

    def release(
        self,
        outcome: Outcome,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        tokens_used: int | None = None,
        error: str = "",
    ) -> None:
        self.limiter._release(self, outcome, retry_after, headers, tokens_used, error)


class EndpointLimiter:
    def __init__(
        self,
        settings: LimitSettings,
        *,
        model: str = "",
        base_url: str = "",
        key_fingerprint: str = "",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings.checked()
        self.model, self.base_url = model, base_url
        host = urlsplit(base_url).netloc if base_url else "api.openai.com"
        self.name = f"{model} @ {host}" + (f" (key {key_fingerprint})" if key_fingerprint else "")
        self.clock = clock
        self._lock = threading.Lock()
        self._queue: AgingQueue[_Waiter] = AgingQueue(max(settings.aging, 1e-6))
        self.window = float(max(settings.min_window, min(settings.initial_window, settings.max_in_flight)))
        self.ssthresh = float(settings.max_in_flight)  # below it: slow start
        self.ceiling = 0.0  # calls in flight when the endpoint last pushed back (0 = never)
        self._grants = 0
        self._full_at = -1  # the grant that last found the window full (or calls waiting)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.epoch = 0
        self.hold_until = 0.0
        now = clock()
        self._requests = _Bucket(settings.requests_per_minute, now) if settings.requests_per_minute else None
        self._tokens = _Bucket(settings.tokens_per_minute, now) if settings.tokens_per_minute else None
        self.calls = self.throttled = self.overloaded = self.failures = 0
        self.throttle_wait = self.queue_wait = 0.0
        self.consecutive_failures = 0
        self.last_error = ""
        self._closed = False
        self._timed_head: _Waiter | None = None  # the head told to wake for a hold / bucket
        self.on_grow: Callable[[], None] | None = None  # called (unlocked) when the window gains a call

    # -- acquiring ----------------------------------------------------------------------------------

    def acquire(
        self,
        priority: int = 0,
        *,
        tokens: int = 0,
        cancel: Cancel | None = None,
        deadline: float | None = None,
        since: float | None = None,
    ) -> Permit:
        """Wait for room (in priority order) and take a permit. `deadline` and `since` are on this
        limiter's clock; `since` (when the call first asked, for aging) defaults to now. Raises
        LimitCancelled when `cancel` is set, the deadline passes or the limiter is reset."""
        began = self.clock()
        tokens = max(0, int(tokens))
        with self._lock:
            if self._closed:
                raise LimitReset("the LLM endpoint limiter was reset")
            room = not len(self._queue) and self.in_flight < max(1, math.floor(self.window))
            if room and not self._blocked_locked(began, tokens):  # nobody waits, nothing holds: go
                return self._permit_locked(tokens)
            waiter = _Waiter(int(priority), tokens)
            self._queue.push(waiter, waiter.priority, began if since is None else since)
            self._grant_locked()
        if cancel is not None and waiter.permit is None:
            cancel.add_callback(lambda _reason: waiter.event.set())
        while True:
            with self._lock:
                if waiter.permit is not None:
                    self.queue_wait += self.clock() - began
                    return waiter.permit
                gone = self._closed or (cancel is not None and cancel.is_set())
                expired = deadline is not None and self.clock() >= deadline
                if gone or expired:
                    self._queue.remove(waiter)
                    self._grant_locked()  # the head may have been this waiter, blocking others
                    if self._closed:
                        raise LimitReset(f"the limiter of the LLM endpoint {self.name} was reset")
                    why = "cancelled" if gone else "deadline passed"
                    raise LimitCancelled(f"gave up waiting for the LLM endpoint {self.name}: {why}")
                pause = self._pause_locked()
            timeout = pause
            if deadline is not None:
                left = max(0.0, deadline - self.clock())
                timeout = left if timeout is None else min(timeout, left)
            # Woken by a grant, a cancel, or when a hold/bucket allows the head to go (it then grants).
            waiter.event.wait(None if timeout is None else max(0.001, timeout))
            waiter.event.clear()
            with self._lock:
                self._grant_locked()

    def _pause_locked(self) -> float | None:
        """Seconds until a hold or a bucket lets the queue's head go (None: only a release can)."""
        now = self.clock()
        waits = [self.hold_until - now]
        head = next(iter(self._queue), None)
        if self._requests is not None:
            self._requests.refill(now)
            waits.append(self._requests.wait_for(1))
        if self._tokens is not None and head is not None:
            self._tokens.refill(now)
            waits.append(self._tokens.wait_for(head.tokens))
        longest = max(waits)
        return longest if longest > 0 else None

    def _grant_locked(self) -> None:
        """Give permits to waiters, best first, while the window, holds and buckets allow."""
        while len(self._queue) and self.in_flight < max(1, math.floor(self.window)):
            head = next(iter(self._queue))
            if self._blocked_locked(self.clock(), head.tokens):
                # Only time can unblock the queue: the head (told once) sleeps until then and grants.
                if head is not self._timed_head:
                    self._timed_head = head
                    head.event.set()
                return
            self._queue.remove(head)
            head.permit = self._permit_locked(head.tokens)
            head.event.set()

    def _blocked_locked(self, now: float, tokens: int) -> bool:
        """Whether a hold or a per-minute bucket keeps a call of `tokens` from going now."""
        if now < self.hold_until:
            return True
        if self._requests is not None:
            self._requests.refill(now)
            if self._requests.wait_for(1) > 0:
                return True
        if self._tokens is not None:
            self._tokens.refill(now)
            if self._tokens.wait_for(tokens) > 0:
                return True
        return False

    def _permit_locked(self, tokens: int) -> Permit:
        """Take a call in flight (the caller checked the window, holds and buckets)."""
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= tokens
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self._grants += 1
        if len(self._queue) > 0 or self.in_flight >= math.floor(self.window):
            self._full_at = self._grants
        return Permit(self, self.epoch, tokens, self._grants)

    # -- releasing ----------------------------------------------------------------------------------

    def _release(
        self,
        permit: Permit,
        outcome: Outcome,
        retry_after: float | None,
        headers: Mapping[str, str] | None,
        tokens_used: int | None,
        error: str,
    ) -> None:
        s = self.settings
        with self._lock:
            if permit.released:
                return
            before = math.floor(self.window)
            permit.released = True
            self.in_flight = max(0, self.in_flight - 1)
            self.calls += 1
            now = self.clock()
            if self._tokens is not None and tokens_used is not None:
                self._tokens.level -= tokens_used - permit.tokens  # settle the estimate
            if outcome is Outcome.OK:
                self.consecutive_failures = 0
                if permit.epoch == self.epoch and self._limited_locked(permit):  # not from before a cut
                    self.window = min(float(s.max_in_flight), self.window + self._step_locked())
            elif outcome in (Outcome.THROTTLED, Outcome.OVERLOADED):
                if outcome is Outcome.THROTTLED:
                    self.throttled += 1
                else:
                    self.overloaded += 1
                    self._failed_locked(error)
                if permit.epoch == self.epoch:  # the first overload of a round trip cuts
                    # The endpoint took at most what was in flight: the new window is a fraction of that.
                    self.ceiling = min(self.window, self.in_flight + 1.0)
                    self.epoch += 1
                else:  # a call sent before the cut failed too: the endpoint took one call fewer
                    self.ceiling = max(float(s.min_window), self.ceiling - 1.0)
                self.window = max(float(s.min_window), min(self.window, self.ceiling * s.backoff))
                self.ssthresh = self.window
            elif outcome is Outcome.FAILED:
                self.failures += 1
                self._failed_locked(error)
            if retry_after is not None and outcome is not Outcome.OK:
                self._hold_locked(now, retry_after)
            for until in _ratelimit_holds(headers or {}):
                self._hold_locked(now, until)
            self._grant_locked()
            grew = math.floor(self.window) > before
        if grew and self.on_grow is not None:
            self.on_grow()

    def _limited_locked(self, permit: Permit) -> bool:
        """Whether demand filled the window (else a success says nothing about more room): the window
        was full at some point while the call was out, calls are waiting, or (slow start) half of it is
        in use."""
        if self._full_at >= permit.number or len(self._queue) > 0:
            return True
        return self.window < self.ssthresh and (self.in_flight + 1) * 2 >= self.window

    def _step_locked(self) -> float:
        """Growth per success: SLOW_START_STEP before the first overload, else 1/window (one call per
        round trip), and PROBE_ROUNDS times slower next to where the endpoint last pushed back."""
        if self.window < self.ssthresh:
            return SLOW_START_STEP
        if self.ceiling and self.window + 1.0 > self.ceiling:
            if self.window > self.ceiling + 1.0:
                self.ceiling = 0.0  # past the old limit without a 429: the endpoint has grown
            else:
                return 1.0 / (self.window * PROBE_ROUNDS)
        return 1.0 / self.window

    def _failed_locked(self, error: str) -> None:
        self.consecutive_failures += 1
        self.last_error = error[:500]

    def _hold_locked(self, now: float, seconds: float) -> None:
        seconds = min(MAX_HOLD, max(0.0, seconds))
        self.hold_until = max(self.hold_until, now + seconds)

    def record_throttle_wait(self, seconds: float) -> None:
        """A throttled call waited this long before its retry (shown as the wait 429s caused)."""
        with self._lock:
            self.throttle_wait += max(0.0, seconds)

    def close(self) -> None:
        """Wake and fail every waiter (the limiter was reset); permits still out release harmlessly."""
        with self._lock:
            self._closed = True
            waiters = list(self._queue)
        for w in waiters:
            w.event.set()

    # -- reading ------------------------------------------------------------------------------------

    def has_room(self, pending: int = 0) -> bool:
        """Another call (after `pending` about to ask) would be granted unless a hold or quota stops it."""
        return self.in_flight + len(self._queue) + pending < max(1, math.floor(self.window))

    @property
    def degraded(self) -> bool:
        return self.consecutive_failures >= self.settings.degraded_after

    def snapshot(self) -> EndpointSnapshot:
        with self._lock:
            return EndpointSnapshot(
                endpoint=self.name,
                model=self.model,
                base_url=self.base_url,
                in_flight=self.in_flight,
                window=round(self.window, 2),
                max_in_flight=self.settings.max_in_flight,
                queue_depth=len(self._queue),
                peak_in_flight=self.peak_in_flight,
                calls=self.calls,
                throttled=self.throttled,
                overloaded=self.overloaded,
                failures=self.failures,
                throttle_wait=round(self.throttle_wait, 3),
                queue_wait=round(self.queue_wait, 3),
                consecutive_failures=self.consecutive_failures,
                last_error=self.last_error,
                held_for=round(max(0.0, self.hold_until - self.clock()), 3),
                degraded=self.degraded,
            )


class Limiters:
    """The endpoint limiters of one server, made on first use. reset() starts every endpoint afresh
    (a restart keeps no stale window, no permit of abandoned calls)."""

    def __init__(
        self,
        settings: LimitSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_grow: Callable[[], None] | None = None,
    ):
        """on_grow() is called when an endpoint's window gains room (the workflow engine admits more)."""
        self.settings = (settings or LimitSettings()).checked()
        self.clock = clock
        self.on_grow = on_grow
        self._lock = threading.Lock()
        self._limiters: dict[tuple[str, str, str], EndpointLimiter] = {}

    def for_endpoint(self, base_url: str, key: str, model: str) -> EndpointLimiter:
        fingerprint = _fingerprint(key) if key else ""
        k = (base_url, fingerprint, model)
        with self._lock:
            limiter = self._limiters.get(k)
            if limiter is None:
                limiter = EndpointLimiter(
                    self.settings,
                    model=model,
                    base_url=base_url,
                    key_fingerprint=fingerprint,
                    clock=self.clock,
                )
                limiter.on_grow = self._grown
                self._limiters[k] = limiter
            return limiter

    def _grown(self) -> None:
        if self.on_grow is not None:
            self.on_grow()

    def __iter__(self) -> Iterator[EndpointLimiter]:
        with self._lock:
            return iter(list(self._limiters.values()))

    def snapshots(self) -> list[EndpointSnapshot]:
        return [limiter.snapshot() for limiter in self]

    def capacity(self) -> int:
        """Calls the endpoints take at once now (the sum of their windows); 0 before any call."""
        return sum(math.floor(limiter.window) for limiter in self)

    def reset(self) -> None:
        with self._lock:
            old, self._limiters = list(self._limiters.values()), {}
        for limiter in old:
            limiter.close()


@functools.lru_cache(maxsize=64)
def _fingerprint(key: str) -> str:
    """What names a key in GetHealth (never the key): asked on every call, so hashed once."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


# -- x-ratelimit-* headers -------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds, in seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _ratelimit_holds(headers: Mapping[str, str]) -> list[float]:
    """Seconds to hold for each exhausted quota (x-ratelimit-remaining-X: 0 with x-ratelimit-reset-X).
    Read on every call's release: a reset is looked up only for an exhausted quota (a lookup in httpx's
    headers walks them all)."""
    out = []
    for remaining_header, reset_header in _RATELIMIT_HEADERS:
        remaining = headers.get(remaining_header)
        if remaining is None:
            continue
        try:
            exhausted = float(remaining) <= 0
        except ValueError:
            continue
        reset = headers.get(reset_header) if exhausted else None
        seconds = None if reset is None else parse_duration(reset)
        if seconds is not None:
            out.append(seconds)
    return out


_RATELIMIT_HEADERS = tuple(
    (f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}") for kind in ("requests", "tokens")
)


def estimate_tokens(messages: list[dict[str, Any]], max_tokens: int | None) -> int:
    """A call's tokens before it is made: ~4 characters a token, plus the answer's budget."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + (max_tokens or 0)
