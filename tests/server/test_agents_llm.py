"""The LLM agent through the real `openai` client against a local OpenAI-compatible stub server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from openai_stub import StubLLM, completion
from voltorch_server.agents.base import OFFLINE_LABEL, AgentError, AgentTask, CancelSignal
from voltorch_server.agents.limiter import Limiters, LimitSettings
from voltorch_server.agents.llm import (
    MAX_CONTEXT_CHARS,
    LlmAgent,
    LlmDefaults,
    LlmSettings,
    parse_json_output,
)
from voltorch_server.agents.llm_clients import CALLS_PER_CLIENT, InProcessCalls, LlmCalls
from voltorch_server.agents.llm_process import ProcessCalls
from voltorch_server.agents.llm_stream import read_events
from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
from voltorch_server.components.events import EventLog
from voltorch_server.config import Config
from voltorch_server.storage.stores import SqlCoordination, SqlEvents
from voltorch_server.telemetry import TraceIds, current_trace

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"


@pytest.fixture(scope="module")
def child_process() -> Iterator[ProcessCalls]:
    calls = ProcessCalls()
    yield calls
    calls.close()


_CALLS: list[LlmCalls | None] = [None]


@pytest.fixture(autouse=True, params=["in-process", "child-process"])
def calls_run(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test of the agent twice: its HTTP calls on its own thread, then in the LLM call process (the
    server's default), which must behave the same."""
    _CALLS[0] = request.getfixturevalue("child_process") if request.param == "child-process" else None
    yield
    _CALLS[0] = None


def agent(stub: StubLLM, retries: int = 2, calls: LlmCalls | None = None, **settings) -> LlmAgent:
    return LlmAgent(
        LlmSettings(base_url=stub.base_url, api_key_env=KEY_ENV, **settings),
        LlmDefaults(model="stub-model", max_retries=retries, timeout=5),
        env={KEY_ENV: "sk-test-123"},
        calls=calls or _CALLS[0],
    )


def task(text: str = "Say hi", **kw) -> AgentTask:
    return AgentTask(task_id="c:0", coordination_id="c", text=text, **kw)


def test_success_records_usage_and_sends_model_settings(stub):
    stub.script.append((200, {}, completion("Hello there")))
    a = agent(stub, system_prompt="You are terse.", temperature=0.2, max_tokens=50)
    out = a.run(task(context={"k": "v"}), CancelSignal())
    assert out.output == "Hello there" and out.structured_output is None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (11, 7, 18)
    (req,) = stub.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test-123"
    assert req["model"] == "stub-model" and req["temperature"] == 0.2 and req["max_tokens"] == 50
    assert req["messages"][0] == {"role": "system", "content": "You are terse."}
    assert "Say hi" in req["messages"][1]["content"] and '"k": "v"' in req["messages"][1]["content"]


def test_the_clients_x_stainless_headers_are_not_sent(stub):
    """The openai client's telemetry headers (platform, retry count, read timeout) are left out: every one
    costs CPU on every call and no endpoint needs them. What an endpoint needs is sent."""
    stub.script.append((200, {}, completion("ok")))
    agent(stub).run(task(), CancelSignal())
    (sent,) = stub.headers
    assert [h for h in sent if h.startswith("x-stainless-")] == []
    assert sent["authorization"] == "Bearer sk-test-123" and sent["content-type"] == "application/json"
    assert sent["accept"] == "application/json" and sent["user-agent"].startswith("OpenAI/Python")


def test_the_context_goes_as_json_and_a_huge_one_is_cut(stub):
    stub.script += [(200, {}, completion("ok")), (200, {}, completion("ok"))]
    context = {"plan": {"tasks": [{"id": "task-1", "title": "Café ☕", "depends_on": []}]}, "n": 3}
    a = agent(stub)
    a.run(task(context=context), CancelSignal())
    text, _, ctx = stub.requests[0]["messages"][1]["content"].partition("\n\nContext (JSON):\n")
    assert text == "Say hi" and json.loads(ctx) == context
    a.run(task(context={"big": "x" * (MAX_CONTEXT_CHARS + 10)}), CancelSignal())
    _, _, cut = stub.requests[1]["messages"][1]["content"].partition("\n\nContext (JSON):\n")
    assert cut.endswith("\n... (truncated)") and len(cut) == MAX_CONTEXT_CHARS + len("\n... (truncated)")


def test_json_answers_become_structured_output_and_capabilities_ask_for_a_shape(stub):
    stub.script.append((200, {}, completion('```json\n{"tasks": [{"id": "task-1"}]}\n```')))
    out = agent(stub).run(task(capabilities=("planning",), agent_capabilities=("planning",)), CancelSignal())
    assert out.structured_output == {"tasks": [{"id": "task-1"}]}
    assert '"tasks"' in stub.requests[0]["messages"][0]["content"]
    assert parse_json_output("not json") is None and parse_json_output("[1, 2]") == [1, 2]


def test_429_is_retried_after_retry_after_then_succeeds(stub):
    stub.script += [
        (429, {"retry-after": "0.3"}, {"error": {"message": "slow down", "type": "rate_limit_error"}}),
        (200, {}, completion("after the wait")),
    ]
    out = agent(stub).run(task(), CancelSignal())
    assert out.output == "after the wait"
    assert len(stub.requests) == 2
    assert not [h for sent in stub.headers for h in sent if h.startswith("x-stainless-")]  # retries too
    assert stub.times[1] - stub.times[0] >= 0.3  # honoured Retry-After


def test_5xx_exhausting_retries_is_a_clear_retryable_error(stub):
    stub.script += [(503, {"retry-after-ms": "10"}, {"error": {"message": "overloaded"}})] * 3
    with pytest.raises(AgentError) as exc:
        agent(stub, retries=2).run(task(), CancelSignal())
    assert exc.value.code == "LLM_UNAVAILABLE" and exc.value.retryable
    assert "3 attempts" in exc.value.message and "503" in exc.value.message
    assert len(stub.requests) == 3


@pytest.mark.parametrize("cut", ["per-call-timeout", "task-deadline"])
def test_a_call_that_times_out_is_an_overload_unless_the_tasks_deadline_cut_it_then_a_clear_error(cut):
    """The endpoint never answers in time: each attempt ends as the client's APITimeoutError (metrics'
    error type). Its per-call timeout is the endpoint's overload, retried, then LLM_UNAVAILABLE; the task's
    deadline cutting it says nothing of the endpoint, and no retry fits before that deadline."""
    gate = threading.Event()  # holds every answer: each attempt times out
    stub = StubLLM(gate=gate)
    limiters = Limiters(LimitSettings())
    seen: list[str] = []
    a = LlmAgent(
        LlmSettings(base_url=stub.base_url, api_key_env=KEY_ENV),
        LlmDefaults(model="stub-model", max_retries=1, timeout=0.3 if cut == "per-call-timeout" else 30),
        env={KEY_ENV: "sk-test-123"},
        on_call=lambda *_, error_type: seen.append(error_type),
        limiters=limiters,
        calls=_CALLS[0],
    )
    try:
        with pytest.raises(AgentError) as exc:
            a.run(task(deadline=None if cut == "per-call-timeout" else time.time() + 0.3), CancelSignal())
    finally:
        gate.set()
        stub.close()
        a.close()
    assert exc.value.code == "LLM_UNAVAILABLE" and exc.value.retryable
    assert "APITimeoutError" in exc.value.message
    (endpoint,) = limiters.snapshots()
    if cut == "per-call-timeout":
        assert "2 attempts" in exc.value.message and seen == ["APITimeoutError", "APITimeoutError"]
        assert (endpoint.calls, endpoint.overloaded, endpoint.failures) == (2, 2, 0), endpoint
    else:
        assert "beyond the task deadline" in exc.value.message and seen == ["APITimeoutError"]
        assert (endpoint.calls, endpoint.overloaded, endpoint.failures) == (1, 0, 0), endpoint


def test_client_errors_are_not_retried(stub):
    stub.script.append((401, {}, {"error": {"message": "bad key"}}))
    with pytest.raises(AgentError) as exc:
        agent(stub).run(task(), CancelSignal())
    assert exc.value.code == "LLM_AUTH" and not exc.value.retryable and len(stub.requests) == 1


@pytest.mark.parametrize(
    ("payload", "hint"),
    [
        ({"unexpected": True}, "no choices"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"index": 0, "message": {"role": "assistant"}}]}, "content is missing"),
        (b"<html>not json</html>", "not JSON"),
    ],
)
def test_malformed_responses_fail_clearly(stub, payload, hint):
    stub.script.append((200, {}, payload))
    with pytest.raises(AgentError) as exc:
        agent(stub).run(task(), CancelSignal())
    assert exc.value.code == "INVALID_OUTPUT" and not exc.value.retryable
    assert "malformed response" in exc.value.message and hint in exc.value.message


SSE = {"content-type": "text/event-stream"}


def _sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\r\n\r\n" for e in events
    )


def _piece(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


@pytest.mark.parametrize(
    ("body", "code", "hint"),
    [
        (_sse(_piece("fine "), b"{not json"), "INVALID_OUTPUT", "an event is not JSON: b'{not json'"),
        (_sse(_piece("fine "), {"error": {"message": "overloaded"}}), "LLM_ERROR", "mid-stream: overloaded"),
    ],
)
def test_a_bad_event_among_good_ones_fails_naming_it(stub, body, code, hint):
    stub.script.append((200, SSE, body))
    with pytest.raises(AgentError) as exc:
        agent(stub, retries=0).run(task(), CancelSignal())
    assert exc.value.code == code and hint in exc.value.message


def test_events_read_together_are_one_delta_and_the_stream_ends_at_done(stub):
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    stub.script.append((200, SSE, _sse(_piece("Hel"), _piece("lo"), usage, b"[DONE]", _piece("after done"))))
    seen: list[str] = []
    out = agent(stub).run(task(on_delta=seen.append), CancelSignal())
    assert out.output == "Hello" == "".join(seen) and out.usage.total_tokens == 5
    # the events of one read are decoded together and their text handed over once
    lines = _sse(_piece("a"), _piece("b"), _piece("c")).split(b"\n")
    chunks: list[dict] = []
    deltas: list[str] = []
    assert not read_events(lines, chunks, task(on_delta=deltas.append))
    assert deltas == ["abc"] and len(chunks) == 3


def test_the_text_read_with_the_end_of_the_stream_is_handed_over_as_the_last(stub):
    """An answer whose text comes in the read that ends the stream gives it as the task's last delta (the
    engine writes it with the outcome); text read before the end stays live text."""
    stub.script.append((200, SSE, _sse(_piece("Hel"), _piece("lo"), b"[DONE]")))
    live: list[str] = []
    last: list[str] = []
    out = agent(stub).run(task(on_delta=live.append, on_last_delta=last.append), CancelSignal())
    assert out.output == "Hello" and live == [] and last == ["Hello"]
    # without a listener for the last text, on_delta gets it, as before
    stub.script.append((200, SSE, _sse(_piece("Hel"), _piece("lo"), b"[DONE]")))
    assert agent(stub).run(task(on_delta=live.append), CancelSignal()).output == "Hello" and live == ["Hello"]
    # a whole JSON completion is the last text too
    stub.script.append((200, {}, json.dumps(completion("Whole")).encode()))
    live, last = [], []
    agent(stub).run(task(on_delta=live.append, on_last_delta=last.append), CancelSignal())
    assert (live, last) == ([], ["Whole"])
    # text read piece by piece before the end is live text; the read with the end carries none here
    stub.script.append((200, {}, completion("Hello there, streaming world")))
    stub.pace = threading.Semaphore(0)

    def on_delta(text: str) -> None:
        live.append(text)
        stub.pace.release()

    live, last = [], []
    out = agent(stub).run(task(on_delta=on_delta, on_last_delta=last.append), CancelSignal())
    stub.pace = None
    assert "".join(live + last) == out.output == "Hello there, streaming world" and len(live) >= 3


def test_a_tool_loops_turns_are_never_the_last_text():
    """Only the agent's own answer is final: a turn of a tool loop (more turns may follow) stays live."""
    lines = _sse(_piece("a"), b"[DONE]").split(b"\n")
    live: list[str] = []
    last: list[str] = []
    assert read_events(lines, [], task(on_delta=live.append, on_last_delta=last.append), final=False)
    assert read_events(lines, [], task(on_delta=live.append, on_last_delta=last.append), final=True)
    assert (live, last) == (["a"], ["a"])


def test_cancel_during_backoff_stops_at_once(stub):
    stub.script.append((429, {"retry-after": "30"}, {"error": {"message": "later"}}))
    cancel = CancelSignal()
    threading.Timer(0.05, cancel.set, args=("user",)).start()
    started = time.monotonic()
    with pytest.raises(AgentError) as exc:
        agent(stub).run(task(), cancel)
    assert exc.value.code == "CANCELLED" and time.monotonic() - started < 5


def test_without_a_key_the_llm_agent_answers_offline_and_says_so(stub):
    a = LlmAgent(LlmSettings(base_url=stub.base_url, api_key_env=KEY_ENV), env={})
    out = a.run(task(capabilities=("analysis",)), CancelSignal())
    assert out.output.splitlines()[0].startswith(f"[{OFFLINE_LABEL}]")
    assert KEY_ENV in out.output.splitlines()[0]
    assert out.structured_output["generated_by"] == OFFLINE_LABEL
    assert stub.requests == []


def test_llm_agent_in_a_coordination_records_usage(stub, db, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-456")
    stub.script.append((429, {"retry-after": "0"}, {"error": {"message": "busy"}}))
    stub.script.append((200, {}, completion('{"summary": "ok", "requirements": []}', 20, 5)))
    eng = CoordinationEngine(
        SqlCoordination(db), EventLog(SqlEvents(db)), Config(builtin_agents=False, llm_max_retries=2)
    )
    eng.start()
    try:
        info = eng.register_agent(
            "gpt",
            kind="llm",
            capabilities=["analysis"],
            llm=LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV, timeout=5),
        )
        assert info.llm is not None
        assert info.llm.model == "stub-model" and info.llm.api_key_env == KEY_ENV
        c = eng.wait(
            eng.request(CoordinationRequest(task="Analyse this", required_capabilities=("analysis",))).id, 10
        )
        assert c.status == "completed"
        assert c.structured_output == {"summary": "ok", "requirements": []}
        assert c.results[0].usage.total_tokens == 25
        assert len(stub.requests) == 2
        assert "sk-test-456" not in json.dumps(info.llm.to_dict())
    finally:
        eng.stop()


def test_the_answer_streams_piece_by_piece_and_a_whole_json_answer_is_read_too(stub):
    stub.script.append((200, {}, completion("Hello there, streaming world")))
    stub.pace = threading.Semaphore(0)  # the next piece is sent once the agent handed this one over
    seen: list[str] = []

    def on_delta(text: str) -> None:
        seen.append(text)
        stub.pace.release()

    out = agent(stub).run(task(on_delta=on_delta), CancelSignal())
    assert out.output == "Hello there, streaming world" == "".join(seen)
    assert seen == [out.output[i : i + stub.chunk_chars] for i in range(0, len(out.output), stub.chunk_chars)]
    stub.pace = None
    assert stub.requests[0]["stream"] is True and stub.requests[0]["stream_options"] == {
        "include_usage": True
    }
    assert (out.usage.total_tokens, out.usage.llm_calls) == (18, 1)
    # an endpoint that ignores stream=True and answers with one JSON completion
    stub.script.append((200, {}, json.dumps(completion("Whole answer")).encode()))
    whole: list[str] = []
    out = agent(stub).run(task(on_delta=whole.append), CancelSignal())
    assert out.output == "Whole answer" and whole == ["Whole answer"] and out.usage.total_tokens == 18


def test_calls_in_flight_are_spread_over_small_client_pools_and_all_answered():
    """Each client takes at most CALLS_PER_CLIENT calls at once (a connection pool's pass over its
    connections is short); the agent adds clients as calls in flight grow and reuses them after."""
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = agent(stub, calls=InProcessCalls())
        n = 2 * CALLS_PER_CLIENT + 1
        outs: list[str] = []
        threads = [
            threading.Thread(target=lambda: outs.append(a.run(task(), CancelSignal()).output))
            for _ in range(n)
        ]
        for t in threads:
            t.start()
        assert stub.wait_for(lambda s: s.in_flight == n)
        assert isinstance(a.calls, InProcessCalls)  # the child process's are the same InProcessCalls
        clients = a.calls.clients("sk-test-123", a.base_url)
        assert len(clients) == 3 and clients.peak_busy == CALLS_PER_CLIENT
        gate.set()
        for t in threads:
            t.join(10)
        assert outs == ["default"] * n
        a.run(task(), CancelSignal())  # a free client is reused
        assert len(clients) == 3 and stub.served == n + 1
    finally:
        gate.set()
        stub.close()


TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"


def test_each_attempt_is_an_llm_chat_span_in_the_tasks_trace(stub, spans):
    stub.script.append((429, {"retry-after-ms": "1"}, {"error": {"message": "later"}}))
    agent(stub).run(task(traceparent=TRACEPARENT), CancelSignal())
    chat = [s for s in spans.get_finished_spans() if s.name == "llm.chat"]
    assert [s.attributes["llm.attempt"] for s in chat] == [1, 2]
    assert {s.attributes["llm.model"] for s in chat} == {"stub-model"}
    assert {(s.context.trace_id, s.parent.span_id) for s in chat} == {(int("ab" * 16, 16), int("cd" * 8, 16))}
    assert [e.name for e in chat[0].events][:1] == ["exception"]


def test_while_nothing_records_spans_what_the_call_writes_still_carries_the_tasks_trace(stub):
    seen: list[TraceIds] = []

    def look(_text: str) -> None:
        seen.append(current_trace())

    t = task(traceparent=TRACEPARENT, on_delta=look, on_last_delta=look)
    agent(stub).run(t, CancelSignal())
    assert seen and {ids.trace_id for ids in seen} == {"ab" * 16}
    assert {ids.span_id for ids in seen}.isdisjoint({"", "cd" * 8})
