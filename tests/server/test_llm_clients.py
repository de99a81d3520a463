"""The `openai` clients of each LLM endpoint (agents/llm_clients.py): an endpoint idle for IDLE_CLOSE seconds
has its clients closed and made afresh on its next call, never while a call is in flight. Through the real
`openai` client against the local stub; the clock is the test's."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest
from fake_clock import FakeClock
from openai_stub import StubLLM
from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.agents.llm_clients import IDLE_CLOSE, SWEEP_EVERY, Answer, CallRequest, InProcessCalls


@pytest.fixture
def calls(clock: FakeClock) -> Iterator[InProcessCalls]:
    c = InProcessCalls(clock=clock)
    yield c
    c.close()


def ask(
    calls: InProcessCalls, stub: StubLLM, key: str, on_delta: Callable[[str], None] | None = None
) -> Answer:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    task = AgentTask(task_id="c:0", coordination_id="c", text="hi", on_delta=on_delta)
    return calls.call(CallRequest(key, stub.base_url, body, 10.0, "req-1", final=False), task, CancelSignal())


def client_of(calls: InProcessCalls, stub: StubLLM, key: str) -> openai.OpenAI:
    """The endpoint's client (one call at a time: its only one), lent without moving the clock."""
    lease = calls.clients(key, stub.base_url).lease()
    assert lease is not None
    with lease as client:
        return client


def test_an_idle_endpoints_clients_are_closed_and_made_afresh_on_its_next_call(calls, clock, stub):
    assert ask(calls, stub, "sk-old").reply is not None
    old = client_of(calls, stub, "sk-old")
    assert calls.open_endpoints() == 1 and "1 endpoints with clients open" in calls.describe()
    clock.now += IDLE_CLOSE + SWEEP_EVERY
    ask(calls, stub, "sk-new")  # a call (any endpoint's) looks for idle ones
    assert old.is_closed() and calls.open_endpoints() == 1
    answer = ask(calls, stub, "sk-old")
    assert answer.reply is not None and answer.reply.content == "default"
    assert stub.requests[-1]["auth"] == "Bearer sk-old"
    new = client_of(calls, stub, "sk-old")
    assert new is not old and not new.is_closed() and calls.open_endpoints() == 2


def test_only_the_endpoints_idle_long_enough_are_closed(calls, clock, stub):
    ask(calls, stub, "sk-a")
    ask(calls, stub, "sk-b")
    a, b = client_of(calls, stub, "sk-a"), client_of(calls, stub, "sk-b")
    clock.now += IDLE_CLOSE - SWEEP_EVERY
    ask(calls, stub, "sk-b")  # a sweep: neither is idle long enough yet
    assert not a.is_closed() and not b.is_closed()
    clock.now += 2 * SWEEP_EVERY
    ask(calls, stub, "sk-c")  # a's last call ended IDLE_CLOSE + SWEEP_EVERY ago, b's 2 * SWEEP_EVERY ago
    assert a.is_closed() and not b.is_closed()
    assert client_of(calls, stub, "sk-b") is b and calls.open_endpoints() == 2
    assert ask(calls, stub, "sk-b").reply is not None  # its client still serves


def test_an_endpoint_with_a_call_in_flight_keeps_its_client(calls, clock, stub):
    """While the call reads its answer, the clock passes IDLE_CLOSE and another endpoint's call sweeps."""
    stub.answer = lambda prompt: "x" * 64  # eight pieces of text: the first one arrives mid-answer
    swept: list[Answer] = []

    def mid_answer(_text: str) -> None:
        if not swept:
            clock.now += IDLE_CLOSE + SWEEP_EVERY
            swept.append(ask(calls, stub, "sk-other"))

    busy = client_of(calls, stub, "sk-busy")  # the client the call will have (the endpoint's only one)
    answer = ask(calls, stub, "sk-busy", on_delta=mid_answer)
    assert swept and answer.reply is not None and answer.reply.content == "x" * 64
    assert not busy.is_closed() and client_of(calls, stub, "sk-busy") is busy
    assert calls.open_endpoints() == 2
    clock.now += IDLE_CLOSE - 1  # its idle time counts from its call's end, not its start
    ask(calls, stub, "sk-other")  # a sweep (SWEEP_EVERY < IDLE_CLOSE - 1)
    assert not busy.is_closed()


def test_a_lease_after_its_endpoint_was_closed_gets_new_clients(calls, clock, stub):
    """A call that looked its endpoint up just before a sweep closed it: its lease is refused and it asks
    again, so no call is made on a closed client nor on clients nobody will close."""
    looked_up = calls.clients("sk-a", stub.base_url)
    clock.now += IDLE_CLOSE + SWEEP_EVERY
    ask(calls, stub, "sk-b")
    assert looked_up.closed and looked_up.lease() is None
    with calls.lease("sk-a", stub.base_url) as client:
        assert not client.is_closed()
    assert calls.clients("sk-a", stub.base_url) is not looked_up
    assert ask(calls, stub, "sk-a").reply is not None
