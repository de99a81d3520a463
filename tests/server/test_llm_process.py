"""The LLM call process (agents/llm_process.py): what only a child process can do to a call. How a call
behaves through it (answers, errors, retries, live text) is test_agents_llm.py's, run both ways."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from queue import SimpleQueue
from typing import Any, cast

import httpx2
import openai
import pytest
import voltorch
from fake_clock import FakeClock
from openai_stub import StubLLM, complete_workflow_answer
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal, TokenUsage
from voltorch_server.agents.limiter import Limiters, LimitSettings
from voltorch_server.agents.llm import LlmAgent, LlmDefaults, LlmSettings
from voltorch_server.agents.llm_clients import Answer, AnswerStopped, CallRequest, InProcessCalls, LlmCalls
from voltorch_server.agents.llm_process import (
    LlmProcessError,
    ProcessCalls,
    describe_error,
    read_frame,
    rebuild_error,
)
from voltorch_server.agents.llm_worker import LogToServer, Worker
from voltorch_server.app import VoltorchServer

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
WAIT = 60.0


@pytest.fixture
def calls() -> Iterator[ProcessCalls]:
    c = ProcessCalls()
    yield c
    c.close()


def agent(stub: StubLLM | str, calls: LlmCalls, retries: int = 2, **kw: Any) -> LlmAgent:
    """An LLM agent on the stub (or an endpoint's base URL) whose calls run in `calls`; `kw`: LlmAgent's
    others (limiters, on_call)."""
    return LlmAgent(
        LlmSettings(base_url=stub if isinstance(stub, str) else stub.base_url, api_key_env=KEY_ENV),
        LlmDefaults(model="stub-model", max_retries=retries, timeout=10),
        env={KEY_ENV: "sk-test-123"},
        calls=calls,
        **kw,
    )


def task(**kw) -> AgentTask:
    return AgentTask(task_id="c:0", coordination_id="c", text="Say hi", **kw)


def request(stub: StubLLM, size: int = 2) -> CallRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * size}], "stream": True}
    return CallRequest("sk-test-123", stub.base_url, body, 10.0, "req-1", final=True)


def child(calls: ProcessCalls):
    running = calls._child
    assert running is not None
    return running


def agent_thread(a: LlmAgent, cancel: CancelSignal) -> tuple[threading.Thread, list[AgentError]]:
    """A thread (not started) that runs the agent on a task, and the AgentError it ends with, if any."""
    errors: list[AgentError] = []

    def run() -> None:
        try:
            a.run(task(), cancel)
        except AgentError as exc:
            errors.append(exc)

    return threading.Thread(target=run), errors


def test_an_agent_with_a_key_starts_the_child_before_its_first_call(calls):
    stub = StubLLM()
    try:
        a = agent(stub, calls)
        assert (
            calls.started == 1 and child(calls).proc.poll() is None and child(calls).proc.pid != os.getpid()
        )
        assert a.run(task(), CancelSignal()).output == "default"
        assert calls.started == 1  # the same child serves every call
        LlmAgent(LlmSettings(api_key_env="VOLTORCH_UNSET_KEY"), env={}, calls=calls)
        assert calls.started == 1
    finally:
        stub.close()


def test_a_child_that_dies_mid_call_fails_the_call_and_the_retry_runs_in_a_new_one(calls):
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = agent(stub, calls)
        first = child(calls)
        outs: list[str] = []
        runner = threading.Thread(target=lambda: outs.append(a.run(task(), CancelSignal()).output))
        runner.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        first.proc.kill()
        gate.set()  # the retry is answered at once
        runner.join(WAIT)
        assert outs == ["default"]
        assert first.gone and calls.started == 2 and child(calls) is not first
    finally:
        gate.set()
        stub.close()


def test_a_cancel_reaches_the_call_in_the_child_which_keeps_it_until_the_endpoint_lets_go(calls):
    """As on the agent's own thread: the call stops at the answer's first piece, and until then it is in
    flight (it holds its permit: test_a_cancelled_call_keeps_its_permit_until_the_endpoint_lets_go)."""
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = agent(stub, calls)
        cancel = CancelSignal()
        runner, errors = agent_thread(a, cancel)
        runner.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        cancel.set("stopped by the test")
        assert child(calls).in_flight() == 1 and errors == []  # the endpoint still has the call
        gate.set()
        runner.join(WAIT)
        assert [e.code for e in errors] == ["CANCELLED"] and "stopped by the test" in errors[0].message
        assert child(calls).in_flight() == 0 and stub.served == 1  # not retried
        assert a.run(task(), CancelSignal()).output == "default"  # the child still serves
    finally:
        gate.set()
        stub.close()


@pytest.mark.parametrize("where", ["in-process", "child-process"])
def test_a_cancelled_call_keeps_its_permit_until_the_endpoint_lets_go(calls, where):
    """llm_max_in_flight = 1: the endpoint never has two calls at once, cancelled ones included."""
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    limiters = Limiters(LimitSettings(max_in_flight=1, initial_window=1))
    used = InProcessCalls() if where == "in-process" else calls
    a = agent(stub, used, retries=0, limiters=limiters)
    threads: list[threading.Thread] = []
    try:
        cancel = CancelSignal()
        for signal_ in (cancel, CancelSignal()):
            threads.append(threading.Thread(target=_quietly, args=(a.run, task(), signal_)))
        threads[0].start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        cancel.set("the task's deadline")
        threads[1].start()
        # bounded: what must not happen is given a second to happen
        assert not stub.wait_for(lambda s: s.in_flight == 2, timeout=1.0)
        gate.set()
        for t in threads:
            t.join(WAIT)
        assert stub.peak_in_flight == 1 and stub.served == 2
    finally:
        gate.set()
        stub.close()
        if where == "in-process":
            used.close()


# An answer whose rate-limit headers say the endpoint takes no more calls for 30 s.
EXHAUSTED = {
    "content-type": "text/event-stream",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "30s",
}
STREAM = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n'


@pytest.mark.parametrize("where", ["in-process", "child-process"])
def test_a_call_cancelled_after_the_endpoint_answered_tells_the_limiter_the_answers_rate_limits(calls, where):
    """The call is cancelled while the endpoint holds its answer: it ends CANCELLED (its permit released
    as abandoned), and the endpoint's limiter still holds new calls for the answer's x-ratelimit reset."""
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    stub.script.append((200, EXHAUSTED, STREAM))
    clock = FakeClock()
    limiters = Limiters(LimitSettings(), clock=clock)
    used = InProcessCalls() if where == "in-process" else calls
    a = agent(stub, used, retries=0, limiters=limiters)
    cancel = CancelSignal()
    runner, errors = agent_thread(a, cancel)
    try:
        runner.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        cancel.set("stopped by the test")
        gate.set()
        runner.join(WAIT)
        assert [e.code for e in errors] == ["CANCELLED"]
        (endpoint,) = limiters.snapshots()
        assert (endpoint.calls, endpoint.in_flight, endpoint.held_for) == (1, 0, 30.0)
    finally:
        gate.set()
        runner.join(WAIT)
        stub.close()
        if where == "in-process":
            used.close()


def test_an_answer_read_whole_before_its_cancel_reached_the_child_keeps_its_headers(calls):
    """The cancel is set by the answer's first text: the child has read the whole answer (it comes in one
    piece) before the cancel reaches it, and its 'done' frame finds the cancel set (were the answer in two
    pieces, the child would stop at the second: the same error). The call raises CANCELLED with the
    answer's rate-limit headers."""
    stub = StubLLM()
    stub.script.append((200, {**EXHAUSTED, "server": "stub"}, STREAM))
    cancel = CancelSignal()
    try:
        with pytest.raises(AgentError) as exc:
            calls.call(
                replace(request(stub), final=False),
                task(on_delta=lambda _text: cancel.set("cancelled by its text")),
                cancel,
            )
    finally:
        stub.close()
    assert exc.value.code == "CANCELLED" and "cancelled by its text" in exc.value.message
    assert isinstance(exc.value, AnswerStopped)
    assert dict(exc.value.headers) == {k: v for k, v in EXHAUSTED.items() if k.startswith("x-ratelimit-")}


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except AgentError:
        pass


def test_a_stuck_child_blocks_neither_a_canceller_nor_the_servers_stop(calls):
    """A child that stops reading its stdin (stopped here by SIGSTOP) with a request larger than the pipe
    holds: cancelling never blocks the canceller's thread, and close() kills the child after its timeout;
    the calls waiting on it then fail as connection errors."""
    stub = StubLLM()
    try:
        calls.warm()
        stuck = child(calls)
        os.kill(stuck.proc.pid, signal.SIGSTOP)
        cancel = CancelSignal()
        failures: list[BaseException] = []

        def big_call() -> None:
            try:
                calls.call(request(stub, size=300_000), task(), cancel)
            except BaseException as exc:
                failures.append(exc)

        caller = threading.Thread(target=big_call)
        caller.start()
        canceller = threading.Thread(target=cancel.set, args=("deadline",))
        canceller.start()
        canceller.join(WAIT)
        assert not canceller.is_alive()
        calls.close(timeout=0.5)
        caller.join(WAIT)
        assert not caller.is_alive() and stuck.proc.returncode == -signal.SIGKILL
        assert [type(f) for f in failures] == [openai.APIConnectionError] and "exited" in str(failures[0])
    finally:
        stub.close()


def test_a_child_that_cannot_start_is_held_back_not_started_by_every_call():
    """Each child logs a warning (a log frame is no answer to a call) and exits."""
    script = (
        "import sys; from voltorch_server.agents.llm_process import write_frame; "
        "write_frame(sys.stdout.buffer, ('log', 0, 30, 'voltorch.test', 'cannot go on')); sys.exit(3)"
    )
    calls = ProcessCalls([sys.executable, "-c", script])
    stub = StubLLM()
    try:
        errors = []
        for _ in range(20):
            with pytest.raises(openai.APIConnectionError) as exc:
                calls.call(request(stub), task(), CancelSignal())
            errors.append(str(exc.value))
        assert calls.started == 2  # a second start at once, then a hold
        assert "exit code 3" in errors[0] and "the next start in" in errors[-1]
        assert calls.describe().startswith("LLM call process not running: 2 starts in a row failed")
    finally:
        calls.close()
        stub.close()


def test_the_child_has_its_own_process_group_so_a_ctrl_c_is_the_servers(calls):
    calls.warm()
    pid = child(calls).proc.pid
    assert os.getpgid(pid) == pid != os.getpgid(0)


def cut_stream(headers: bytes = b"") -> tuple[socket.socket, int]:
    """An endpoint (its socket, to close, and port) that answers every call with a 200 event stream (these
    extra header lines) promising 1000 bytes, and ends the connection after one event: httpx raises
    RemoteProtocolError mid-stream."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 1000\r\n"
                    + headers
                    + b'\r\ndata: {"choices":[{"delta":{"content":"hel"}}]}\n\n'
                )
                conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_an_httpx_error_mid_stream_reads_the_same_from_the_child_as_in_process(calls):
    """The stream ends before its promised length: the agent reports it, and the call's error type, as
    when the call ran on its own thread."""
    srv, port = cut_stream()
    seen: list[tuple[str, str, str]] = []
    own = InProcessCalls()
    try:
        for where in (own, calls):
            types: list[str] = []
            a = agent(
                f"http://127.0.0.1:{port}/v1/",
                where,
                retries=0,
                on_call=lambda *_, error_type="", types=types: types.append(error_type),
            )
            with pytest.raises(AgentError) as exc:
                a.run(task(), CancelSignal())
            seen.append((exc.value.code, exc.value.message, types[-1]))
        assert seen[1] == seen[0] and seen[0][2] == "RemoteProtocolError"
    finally:
        own.close()
        srv.close()


def test_after_close_the_child_has_exited_and_calls_are_refused_as_connection_errors(calls):
    stub = StubLLM()
    try:
        agent(stub, calls)
        proc = child(calls).proc
        calls.close()
        assert proc.wait(WAIT) == 0
        with pytest.raises(openai.APIConnectionError, match="stopping"):
            calls.call(request(stub), task(), CancelSignal())
    finally:
        stub.close()


@pytest.mark.parametrize(
    "error",
    [
        openai.RateLimitError(
            "slow down",
            response=httpx2.Response(
                429,
                headers={"retry-after-ms": "250", "x-ratelimit-remaining-requests": "0", "server": "stub"},
                request=httpx2.Request("POST", "http://x/v1/chat/completions"),
            ),
            body={"message": "slow down"},
        ),
        openai.APITimeoutError(request=httpx2.Request("POST", "http://x")),
        openai.APIConnectionError(message="refused", request=httpx2.Request("POST", "http://x")),
        AgentError("the model refused: no", code="LLM_REFUSED", retryable=False),
        AnswerStopped(
            "the model refused: no",
            httpx2.Headers(
                {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s", "server": "s"}
            ),
            code="LLM_REFUSED",
        ),
        AnswerStopped.reading(
            httpx2.RemoteProtocolError("peer closed connection"),
            httpx2.Headers({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s"}),
        ),
        ValueError("Expecting value: line 1 column 1"),
        KeyError("odd"),
    ],
    ids=["status", "timeout", "connection", "agent", "answer-stopped", "answer-cut", "value", "other"],
)
def test_errors_cross_the_pipe_as_the_openai_client_raised_them(error):
    rebuilt = rebuild_error(describe_error(error))
    if isinstance(error, KeyError):  # not one a call is known to raise: its type is named
        assert isinstance(rebuilt, LlmProcessError) and (rebuilt.type_name, str(rebuilt)) == (
            "KeyError",
            "'odd'",
        )
        return
    assert type(rebuilt) is type(error) and str(rebuilt) == str(error)
    if isinstance(error, openai.APIStatusError):
        assert isinstance(rebuilt, openai.APIStatusError)
        assert rebuilt.status_code == 429 and rebuilt.message == "slow down" and rebuilt.body == error.body
        # what the agent and the limiter read: Retry-After and the rate-limit headers, no others
        assert dict(rebuilt.response.headers) == {
            "retry-after-ms": "250",
            "x-ratelimit-remaining-requests": "0",
        }
    if isinstance(error, AgentError):
        assert isinstance(rebuilt, AgentError)
        assert (rebuilt.message, rebuilt.code, rebuilt.retryable) == (
            error.message,
            error.code,
            error.retryable,
        )
    if isinstance(error, AnswerStopped):  # the rate-limit headers only, as a status error's
        assert isinstance(rebuilt, AnswerStopped) and dict(rebuilt.headers) == {
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "1s",
        }
        if error.error is None:
            assert rebuilt.error is None
        else:  # the connection's error it stopped with, named as any other the child's
            assert isinstance(rebuilt.error, LlmProcessError)
            assert (rebuilt.error.type_name, str(rebuilt.error)) == (
                "RemoteProtocolError",
                "peer closed connection",
            )


def test_a_malformed_answer_keeps_its_code_and_the_endpoints_headers(calls):
    stub = StubLLM()
    try:
        sse = {"content-type": "text/event-stream"}
        stub.script.append((200, sse, b"data: {not json}\n\n"))
        with pytest.raises(AgentError) as exc:
            calls.call(request(stub), task(), CancelSignal())
        assert exc.value.code == "INVALID_OUTPUT" and "not JSON" in exc.value.message
        stub.script.append((200, {"x-ratelimit-remaining-requests": "7"}, b'{"object": "no choices"}'))
        answer = calls.call(request(stub), task(), CancelSignal())
        assert answer.reply is None and answer.error is not None and answer.error.code == "INVALID_OUTPUT"
        assert "no choices" in answer.error.message
        assert answer.headers == {"x-ratelimit-remaining-requests": "7"}
    finally:
        stub.close()


@pytest.mark.parametrize("in_process", [False, True], ids=["child-process", "in-process"])
def test_a_server_runs_its_llm_calls_where_llm_in_process_says(config, monkeypatch, in_process):
    stub = StubLLM(complete_workflow_answer)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    endpoint = {"openai_api_key_env": KEY_ENV, "openai_base_url": stub.base_url, "openai_model": "stub-model"}
    srv = VoltorchServer(replace(config, llm_in_process=in_process, **endpoint)).start()
    try:
        calls = srv.runtime.llm_calls
        with voltorch.Client(srv.target, timeout=10) as client:
            e = client.workflows.execute_complete("Build a CLI calculator").execution
            e = client.workflows.wait(e.id, timeout=WAIT)
            llm = next(c for c in client.orchestrator.health(refresh=True).components if c.name == "llm")
        assert e.status == "completed", e.error
        assert e.usage.llm_calls == len(stub.prompts) == 6
        where = llm.details["calls"]
        assert where.startswith("in the server's process" if in_process else "LLM call process pid"), where
        if in_process:
            assert isinstance(calls, InProcessCalls)
        else:
            assert isinstance(calls, ProcessCalls) and calls.started == 1
            proc = child(calls).proc
    finally:
        srv.stop(grace=1.0)
        stub.close()
    if not in_process:
        assert proc.wait(WAIT) == 0  # the server's stop ends its child


def test_the_childs_log_records_reach_the_servers_logging(caplog):
    """A warning in the child is logged by the server (its file, format and level), naming the child."""
    out = io.BytesIO()
    handler = LogToServer(Worker(out))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("openai").addHandler(handler)
    try:
        logging.getLogger("openai").warning("retrying soon")
    finally:
        logging.getLogger("openai").removeHandler(handler)
    out.seek(0)
    record = read_frame(out)
    assert record == ("log", 0, logging.WARNING, "openai", "retrying soon")
    # the server's side, with a child that sends that frame and waits for its stdin to close
    script = (
        "import sys; from voltorch_server.agents.llm_process import write_frame; "
        f"write_frame(sys.stdout.buffer, {record!r}); sys.stdin.read()"
    )
    heard = threading.Event()
    seen: list[logging.LogRecord] = []

    class Listener(logging.Handler):
        def emit(self, r: logging.LogRecord) -> None:
            seen.append(r)
            heard.set()

    listener = Listener()
    logging.getLogger("openai").addHandler(listener)
    calls = ProcessCalls([sys.executable, "-c", script])
    try:
        calls.warm()
        assert heard.wait(WAIT)
        assert seen[0].levelno == logging.WARNING
        assert seen[0].getMessage() == f"retrying soon (LLM call process pid {child(calls).proc.pid})"
    finally:
        logging.getLogger("openai").removeHandler(listener)
        calls.close()


def test_an_answer_that_cannot_be_sent_back_fails_its_call_with_a_clear_error():
    out = io.BytesIO()
    worker = Worker(out)

    class Odd(InProcessCalls):
        def call(self, request, task, cancel):
            return Answer(cast(Any, {"x-ratelimit-odd": lambda: 0}), None)  # a header pickle refuses

    worker.calls = Odd()
    worker.run(7, CallRequest("k", "http://x", {}, 1.0, "r", True), CancelSignal())
    out.seek(0)
    frame = read_frame(out)
    assert frame is not None and frame[:2] == ("error", 7)
    error = rebuild_error(frame[2:])
    assert isinstance(error, LlmProcessError) and error.type_name == "RuntimeError"
    assert str(error).startswith("the answer could not be sent back:")


@pytest.mark.parametrize("where", ["in-process", "child-process"])
def test_a_call_cancelled_before_it_is_sent_stops_at_its_first_piece(calls, where):
    """A cancel set between the agent's permit and its call: the child gets it after the call's frame and
    stops at the answer's first piece, as the agent's own thread does (the stub holds the rest of the
    answer until the test lets it go, so a call that reads on cannot end before)."""
    release = threading.Event()

    class Held:  # the stub's pace: the answer's next piece waits for the test
        def acquire(self, timeout: float | None = None) -> bool:
            return release.wait()

    stub = StubLLM(lambda prompt: "y" * 200, chunk_chars=8, pace=Held())
    used = calls if where == "child-process" else InProcessCalls()
    cancel = CancelSignal()
    cancel.set("cancelled just before the call")
    codes: list[str] = []

    def run() -> None:
        try:
            used.call(request(stub), task(), cancel)
            codes.append("answered")
        except AgentError as exc:
            codes.append(exc.code)

    runner = threading.Thread(target=run)
    try:
        runner.start()
        runner.join(WAIT)
        ended_while_held = not runner.is_alive()
    finally:
        release.set()
        runner.join(WAIT)
        stub.close()
        if where == "in-process":
            used.close()
    assert ended_while_held and codes == ["CANCELLED"]


def test_a_child_that_cannot_read_its_frames_says_why_and_exits_nonzero():
    garbage = b"\x80\x05not a pickle"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "voltorch_server.agents.llm_worker"],
        input=struct.pack("<I", len(garbage)) + garbage,
        capture_output=True,
        env=env,
        timeout=WAIT,
    )
    out = io.BytesIO(proc.stdout)
    frames = []
    while (f := read_frame(out)) is not None:
        frames.append(f)
    assert proc.returncode == 1
    ((kind, _, level, name, text),) = frames
    assert (kind, level, name) == ("log", logging.ERROR, "voltorch.agents.llm_worker")
    assert "the LLM call process failed" in text and "UnpicklingError" in text


def test_the_child_imports_the_openai_client_and_not_grpc_protobuf_the_sdk_or_opentelemetry():
    """The child's imports are its start-up time and most of its memory: it needs the `openai` client and
    the agents' plain parts, not the server's gRPC, storage and tracing (nor the SDK they come with)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(  # the child's own command; stdin at its end, so it exits after starting
        [sys.executable, "-X", "importtime", "-m", "voltorch_server.agents.llm_worker"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=WAIT,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert {"openai", "httpx2", "voltorch_server.agents.llm_clients"} <= imported
    # The SDK package is the whole client (its import alone brings grpc and the generated stubs).
    unwanted = ["grpc", "google.protobuf", "voltorch", "opentelemetry", "sqlite3", "psycopg"]
    unwanted += [f"voltorch_server.{p}" for p in ("components", "storage", "servicers", "telemetry")]
    assert sorted(m for m in imported if any(m == p or m.startswith(p + ".") for p in unwanted)) == []


@pytest.mark.parametrize("where", ["in-process", "child-process"])
def test_a_stream_failing_mid_way_keeps_its_error_type_and_holds_on_its_rate_limits(calls, where):
    """The endpoint answers, then sends an error event mid-stream: the agent fails with LLM_ERROR, the
    metrics' and the endpoint's error type stay the AgentError it was before AnswerStopped carried the
    headers (an internal wrapper's class name is no error type), and the answer's exhausted quota holds
    the endpoint's next calls."""
    stub = StubLLM()
    stub.script.append(
        (
            200,
            EXHAUSTED,
            b'data: {"choices": [{"index": 0, "delta": {"content": "he"}}]}\n\n'
            b'data: {"error": {"message": "the model is overloaded"}}\n\n',
        )
    )
    limiters = Limiters(LimitSettings(), clock=FakeClock())
    used = InProcessCalls() if where == "in-process" else calls
    types: list[str] = []
    a = agent(
        stub, used, retries=0, limiters=limiters, on_call=lambda *_, error_type="": types.append(error_type)
    )
    try:
        with pytest.raises(AgentError) as exc:
            a.run(task(), CancelSignal())
    finally:
        stub.close()
        if where == "in-process":
            used.close()
    assert (exc.value.code, exc.value.retryable) == ("LLM_ERROR", True)
    assert types == ["AgentError"]
    (endpoint,) = limiters.snapshots()
    assert endpoint.last_error.startswith("AgentError: LLM endpoint failed mid-stream")
    assert (endpoint.in_flight, endpoint.held_for) == (0, 30.0)


def test_answer_stopped_pickles_and_copies_as_an_agent_error_does():
    """An exception is pickled and copied as cls(*args) plus its state: AnswerStopped's headers and code are
    not in its args, so it could be neither (an AgentError can)."""
    error = AnswerStopped("cancelled: stop", {"x-ratelimit-remaining-requests": "0"}, code="CANCELLED")
    error.usage = TokenUsage(1, 2, 3)
    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(again) is AnswerStopped
        assert (again.message, again.code, again.retryable, again.usage, again.error) == (
            "cancelled: stop",
            "CANCELLED",
            False,
            error.usage,
            None,
        )
        assert dict(again.headers) == {"x-ratelimit-remaining-requests": "0"}
    cut = AnswerStopped.reading(ValueError("cut"), {})
    for again in (pickle.loads(pickle.dumps(cut)), copy.copy(cut)):
        assert (again.code, again.retryable, type(again.error), str(again.error)) == (
            "LLM_ERROR",
            True,
            ValueError,
            "cut",
        )


@pytest.mark.parametrize("key", ["", "sk-test"], ids=["offline", "with-a-key"])
def test_a_server_that_makes_no_llm_call_never_imports_the_openai_client(tmp_path, key):
    """The server's modules import `openai` where a call uses it (llm.py's docstring): ~0.6 s of every
    start. A server with a key starts its LLM call process (which imports it) but not in its own process."""
    script = """
import sys
import voltorch
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

srv = VoltorchServer(Config(host="127.0.0.1", port=0, db=sys.argv[1], openai_api_key_env=sys.argv[2])).start()
try:
    with voltorch.Client(srv.target, timeout=10) as c:
        c.state.set("k", 1)
        assert c.orchestrator.health(refresh=True).status
        calls = srv.runtime.llm_calls
        print(type(calls).__name__, getattr(calls, "started", "-"))
finally:
    srv.stop(grace=1.0)
print(sorted(m for m in sys.modules if m == "openai" or m.startswith("openai.")))
"""
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if key:
        env[KEY_ENV] = key
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "v.db"), KEY_ENV],
        capture_output=True,
        env=env,
        timeout=WAIT,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    where, imported = proc.stdout.decode().splitlines()[-2:]
    assert where == ("ProcessCalls 1" if key else "ProcessCalls 0"), where
    assert imported == "[]"


def test_a_call_registering_with_a_child_that_died_meanwhile_fails_as_a_connection_error(calls):
    """The race between `_running` handing out a child and the call registering with it: the child is
    gone by then, and the call fails as the retried connection error, naming how the child ended."""
    calls.warm()
    dead = child(calls)
    dead.proc.kill()
    dead._reader.join(WAIT)  # the reader saw the end and marked the child gone
    assert dead.gone
    with pytest.raises(openai.APIConnectionError, match=r"exited \(exit code -9\)"):
        dead.register(1, SimpleQueue())


@pytest.mark.parametrize("where", ["in-process", "child-process"])
def test_a_stream_cut_mid_way_holds_the_endpoint_on_its_answers_rate_limits(calls, where):
    """The endpoint answers with an exhausted quota, sends one event and closes the connection before the
    promised length: the answer's x-ratelimit headers hold the endpoint as a whole answer's would, and the
    failure is reported as the connection's (its error type, code and message) as before it carried them."""
    srv, port = cut_stream(b"x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: 30s\r\n")
    limiters = Limiters(LimitSettings(), clock=FakeClock())
    used = InProcessCalls() if where == "in-process" else calls
    types: list[str] = []
    a = agent(
        f"http://127.0.0.1:{port}/v1/",
        used,
        retries=0,
        limiters=limiters,
        on_call=lambda *_, error_type="": types.append(error_type),
    )
    try:
        with pytest.raises(AgentError) as exc:
            a.run(task(), CancelSignal())
    finally:
        srv.close()
        if where == "in-process":
            used.close()
    assert (exc.value.code, exc.value.retryable) == ("LLM_ERROR", True)
    assert exc.value.message.startswith("LLM call failed: RemoteProtocolError: peer closed connection")
    assert types == ["RemoteProtocolError"]
    (endpoint,) = limiters.snapshots()
    assert endpoint.last_error.startswith("RemoteProtocolError: peer closed connection")
    assert (endpoint.in_flight, endpoint.held_for) == (0, 30.0)


# Run in a fresh interpreter (this one has `openai` loaded): notes, as `openai` starts loading, which locks
# of the calls (ProcessCalls' and its child's, or InProcessCalls' and its endpoints' clients') and how many
# endpoint permits are held, then plays a scenario.
FIRST_IMPORT = """
import importlib.abc
import json
import sys
from queue import SimpleQueue

from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal
from voltorch_server.agents.limiter import Limiters, LimitSettings
from voltorch_server.agents.llm import LlmAgent, LlmDefaults, LlmSettings
from voltorch_server.agents.llm_clients import CallRequest, InProcessCalls
from voltorch_server.agents.llm_process import ProcessCalls

scenario, base_url = sys.argv[1:]
calls = InProcessCalls() if scenario == "a failed call (llm_in_process)" else ProcessCalls()
limiters = Limiters(LimitSettings())
seen = []


def locks():
    if isinstance(calls, ProcessCalls):
        return {"ProcessCalls._lock": calls._lock, "_Child._lock": calls._child and calls._child._lock}
    return {"InProcessCalls._lock": calls._lock} | {
        f"EndpointClients._lock {n}": c._lock for n, c in enumerate(calls._endpoints.values())
    }


class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "openai" and not seen:
            held = sorted(k for k, lock in locks().items() if lock and lock.locked())
            seen.append({"locks held": held, "permits": sum(e.in_flight for e in limiters.snapshots())})
        return None  # the import goes on as usual


assert "openai" not in sys.modules
sys.meta_path.insert(0, Watch())
task = AgentTask(task_id="c:0", coordination_id="c", text="hi")
try:
    if scenario.startswith("a failed call"):
        agent = LlmAgent(
            LlmSettings(base_url=base_url, api_key_env="KEY"),
            LlmDefaults(model="stub-model", max_retries=0, timeout=10),
            env={"KEY": "sk-test-123"},
            limiters=limiters,
            calls=calls,
        )
        agent.run(task, CancelSignal())
    elif scenario == "a call process stopping":
        calls.close()
        calls.call(CallRequest("sk-test-123", base_url, {}, 10.0, "r", True), task, CancelSignal())
    else:  # a call registering with a child gone meanwhile
        calls.warm()
        dead = calls._child
        dead.proc.kill()
        dead._reader.join(60)
        dead.register(1, SimpleQueue())
except Exception as exc:
    print(type(exc).__name__)
finally:
    calls.close()
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    "scenario",
    [
        "a failed call",
        "a failed call (llm_in_process)",
        "a call process stopping",
        "a call registering with a child gone meanwhile",
    ],
)
def test_the_servers_first_import_of_the_openai_client_holds_no_lock_nor_permit_of_the_calls(scenario):
    """A call's failure is, in a server whose calls run in the LLM call process, its first need of `openai`'s
    types (~0.6 s to load): the agent loads them before it takes the endpoint's permit (so does it with
    llm_in_process, whose clients need them), and ProcessCalls makes its refusals once its locks are
    released, so no other call waits behind the import."""
    stub = StubLLM()
    stub.script.append((500, {"content-type": "application/json"}, b'{"error": {"message": "down"}}'))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_IMPORT, scenario, stub.base_url],
            capture_output=True,
            env=env,
            timeout=WAIT,
        )
    finally:
        stub.close()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    error, seen = proc.stdout.decode().splitlines()[-2:]
    assert error == ("AgentError" if scenario.startswith("a failed call") else "APIConnectionError")
    assert json.loads(seen) == [{"locks held": [], "permits": 0}]
