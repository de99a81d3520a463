"""The endpoint limiter's rules (AIMD window, holds, quotas, priorities, reset), on a clock moved by hand."""

from __future__ import annotations

import threading

import httpx2
import pytest
from fake_clock import FakeClock
from voltorch_server.agents.limiter import (
    EndpointLimiter,
    LimitCancelled,
    Limiters,
    LimitSettings,
    Outcome,
    parse_duration,
)


def limiter(clock: FakeClock, **settings) -> EndpointLimiter:
    return EndpointLimiter(LimitSettings(**settings), model="m", base_url="http://x/v1", clock=clock)


def take(lim: EndpointLimiter, n: int) -> list:
    """n permits that are free now (never blocks: a deadline of now fails instead of waiting)."""
    return [lim.acquire(deadline=lim.clock()) for _ in range(n)]


def test_slow_start_grows_while_the_window_is_full_and_stops_when_demand_does(clock):
    lim = limiter(clock, initial_window=4, max_in_flight=64)
    for p in take(lim, 4):
        p.release(Outcome.OK)
    assert 4 < lim.window <= 8  # at most doubled in one round trip
    grown = lim.window
    for _ in range(20):  # one call at a time: the window is not what limits, so it stays
        take(lim, 1)[0].release(Outcome.OK)
    assert lim.window == grown


def test_an_overload_cuts_the_window_once_per_round_trip_and_never_below_the_minimum(clock):
    lim = limiter(clock, initial_window=10, backoff=0.5, min_window=2)
    permits = take(lim, 10)
    for p in permits[:5]:  # five 429s from calls granted before the first cut: one cut (to 10 x 0.5) ...
        p.release(Outcome.THROTTLED)
    # ... and each later one says the endpoint took one call fewer: (10 - 4) x 0.5, not 10 x 0.5^5
    assert lim.window == 3.0 and lim.snapshot().throttled == 5
    for p in permits[5:]:
        p.release(Outcome.OK)
    for _ in range(5):  # each call granted after a cut may cut again, down to min_window
        take(lim, 1)[0].release(Outcome.OVERLOADED)
    assert lim.window == 2.0
    with pytest.raises(LimitCancelled):
        take(lim, 3)  # only 2 fit


def test_after_an_overload_growth_is_additive_and_slow_next_to_the_limit_found(clock):
    lim = limiter(clock, initial_window=20, backoff=0.5, max_in_flight=64)
    permits = take(lim, 20)
    permits[0].release(Outcome.THROTTLED)  # 20 in flight when the endpoint pushed back
    for p in permits[1:]:
        p.release(Outcome.OK)
    assert lim.window == 10.0
    for _ in range(5):  # five full windows of successes: about one call per round trip
        for p in take(lim, int(lim.window)):
            p.release(Outcome.OK)
    assert 14 <= lim.window <= 15.5
    while lim.window < 19:
        for p in take(lim, int(lim.window)):
            p.release(Outcome.OK)
    before = lim.window
    for _ in range(4):  # next to 20: four round trips gain far less than a call
        for p in take(lim, int(lim.window)):
            p.release(Outcome.OK)
    assert lim.window - before < 0.5


def test_the_window_never_exceeds_the_configured_ceiling(clock):
    lim = limiter(clock, initial_window=4, max_in_flight=6)
    for _ in range(10):
        for p in take(lim, int(lim.window)):
            p.release(Outcome.OK)
    assert lim.window == 6.0


def test_retry_after_holds_every_new_call_until_it_passes(clock):
    lim = limiter(clock, initial_window=8)
    take(lim, 1)[0].release(Outcome.THROTTLED, retry_after=2.0)
    assert lim.snapshot().held_for == 2.0
    with pytest.raises(LimitCancelled):
        take(lim, 1)
    clock.now += 2.0
    take(lim, 1)


def test_exhausted_rate_limit_headers_hold_until_their_reset(clock):
    lim = limiter(clock)
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}
    take(lim, 1)[0].release(Outcome.OK, headers=headers)
    assert lim.snapshot().held_for == 1.5
    with pytest.raises(LimitCancelled):
        take(lim, 1)
    clock.now += 1.5
    take(lim, 1)[0].release(Outcome.OK, headers={**headers, "x-ratelimit-remaining-requests": "3"})
    assert lim.snapshot().held_for == 0
    # As the agent passes them: the response's headers (case-insensitive); the tokens quota holds too.
    tokens = httpx2.Headers({"X-RateLimit-Remaining-Tokens": "0", "X-RateLimit-Reset-Tokens": "250ms"})
    take(lim, 1)[0].release(Outcome.OK, headers=tokens)
    assert lim.snapshot().held_for == 0.25
    clock.now += 0.25
    no_reset = {"x-ratelimit-remaining-requests": "0"}  # exhausted, no reset given: nothing to wait for
    take(lim, 1)[0].release(Outcome.OK, headers=no_reset)
    assert lim.snapshot().held_for == 0
    assert (
        parse_duration("6m0s") == 360
        and parse_duration("20ms") == 0.02
        and parse_duration("1h2m3.5s") == 3723.5
    )
    assert parse_duration("soon") is None


def test_requests_per_minute_allow_a_burst_then_the_rate(clock):
    lim = limiter(clock, requests_per_minute=60)  # 1/s, bursts of 6
    for p in take(lim, 6):
        p.release(Outcome.OK)
    with pytest.raises(LimitCancelled):
        take(lim, 1)
    clock.now += 1.0
    take(lim, 1)


def test_tokens_per_minute_are_settled_with_what_the_call_used(clock):
    lim = limiter(clock, tokens_per_minute=600)  # 10/s, bucket of 60
    p = lim.acquire(tokens=10, deadline=clock())
    p.release(Outcome.OK, tokens_used=60)  # the estimate was 10; 60 were used: the bucket is empty
    with pytest.raises(LimitCancelled):
        lim.acquire(tokens=10, deadline=clock())
    clock.now += 1.0
    lim.acquire(tokens=10, deadline=clock())


def _waiter(lim: EndpointLimiter, name: str, priority: int, order: list[str], since: float | None = None):
    def run() -> None:
        p = lim.acquire(priority, since=since)
        order.append(name)
        p.release(Outcome.OK)

    t = threading.Thread(target=run, daemon=True)
    depth = lim.snapshot().queue_depth
    t.start()
    assert _until(lambda: lim.snapshot().queue_depth == depth + 1)
    return t


def _until(predicate, timeout: float = 5.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    return predicate()


def test_waiting_calls_go_in_priority_order_and_old_ones_age_up(clock):
    lim = limiter(clock, initial_window=1, max_in_flight=1, aging=30)
    first = take(lim, 1)[0]
    order: list[str] = []
    threads = [
        _waiter(lim, "low", 1, order),
        _waiter(lim, "normal", 2, order),
        _waiter(lim, "critical", 4, order),
        _waiter(lim, "high", 3, order),
        _waiter(lim, "old low", 1, order, since=clock() - 100),  # waited 100 s: above critical
    ]
    first.release(Outcome.OK)
    for t in threads:
        t.join(5)
    assert order == ["old low", "critical", "high", "normal", "low"]


def test_cancel_leaves_the_queue_and_lets_the_next_call_go(clock):
    from voltorch_server.agents.base import CancelSignal

    lim = limiter(clock, initial_window=1, max_in_flight=1)
    held = take(lim, 1)[0]
    cancel = CancelSignal()
    errors: list[Exception] = []

    def run() -> None:
        try:
            lim.acquire(cancel=cancel)
        except LimitCancelled as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert _until(lambda: lim.snapshot().queue_depth == 1)
    cancel.set("stop")
    t.join(5)
    assert errors and lim.snapshot().queue_depth == 0
    held.release(Outcome.OK)
    take(lim, 1)


def test_consecutive_failures_make_the_endpoint_degraded_until_a_success(clock):
    lim = limiter(clock, degraded_after=5)
    for _ in range(4):
        take(lim, 1)[0].release(Outcome.FAILED, error="APIConnectionError: Connection error.")
    assert not lim.snapshot().degraded
    take(lim, 1)[0].release(Outcome.FAILED, error="APIConnectionError: Connection error.")
    snap = lim.snapshot()
    assert snap.degraded and snap.consecutive_failures == 5 and "Connection error" in snap.last_error
    take(lim, 1)[0].release(Outcome.OK)
    assert not lim.snapshot().degraded


def test_reset_starts_every_endpoint_afresh_and_old_permits_release_harmlessly(clock):
    limiters = Limiters(LimitSettings(initial_window=8, backoff=0.5), clock=clock)
    old = limiters.for_endpoint("http://x/v1", "sk-1", "m")
    assert limiters.for_endpoint("http://x/v1", "sk-1", "m") is old
    assert limiters.for_endpoint("http://x/v1", "sk-2", "m") is not old  # another key, another limit
    permits = take(old, 8)
    permits[0].release(Outcome.THROTTLED)
    assert old.window == 4.0
    limiters.reset()
    fresh = limiters.for_endpoint("http://x/v1", "sk-1", "m")
    for p in permits[1:]:
        p.release(Outcome.OK)
    snap = fresh.snapshot()
    assert fresh is not old and snap.window == 8.0 and snap.in_flight == 0 and snap.throttled == 0
    with pytest.raises(LimitCancelled):
        old.acquire()
    assert "sk-1" not in snap.endpoint


def test_a_call_its_caller_gave_up_on_neither_cuts_the_window_nor_counts_as_a_failure(clock):
    lim = limiter(clock, initial_window=8, degraded_after=1)
    take(lim, 1)[0].release(Outcome.ABANDONED, error="APITimeoutError: cut short by the task deadline")
    snap = lim.snapshot()
    assert snap.window == 8.0 and snap.failures == 0 and not snap.degraded and snap.in_flight == 0
