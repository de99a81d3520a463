"""Live token streams: a streaming agent's text published as batched `agent.output.delta` events,
delivered by WatchExecution (watch(deltas=True)) and Subscribe; the final output unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import voltorch
from openai_stub import StubLLM
from polling import until
from voltorch_server.app import VoltorchServer
from voltorch_server.components.coordination import DeltaStream
from voltorch_server.components.shared import TimerQueue
from voltorch_server.config import Config

ROOT = Path(__file__).resolve().parents[2]
BOTH_BACKENDS = True  # every test using a server runs on SQLite and on PostgreSQL (tests/conftest.py)
KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
ANSWER = " ".join(f"word{i}" for i in range(300))  # ~2 300 characters, streamed 8 at a time


def test_delta_stream_batches_by_size_and_age_and_flushes_the_rest():
    now = [0.0]
    published: list[dict] = []
    ds = DeltaStream(published.append, {"task_id": "t"}, interval=0.1, chars=10, clock=lambda: now[0])
    ds.write("abc")
    ds.write("def")
    assert published == []  # 6 characters, no time passed
    ds.write("ghij")
    assert published == [{"task_id": "t", "offset": 0, "delta": "abcdefghij"}]
    ds.write("k")
    now[0] = 0.2
    ds.write("l")  # old enough
    assert published[-1] == {"task_id": "t", "offset": 10, "delta": "kl"}
    ds.write("m")
    ds.flush()
    ds.flush()  # nothing left: nothing published
    assert [p["delta"] for p in published] == ["abcdefghij", "kl", "m"] and published[-1]["offset"] == 12


def test_held_text_and_the_last_piece_wait_for_the_outcome():
    """With `hold` (an inline step), text the agent marks as its last and whatever is left at the end are
    kept for drain() (written with the outcome), however old: no write of their own. Without hold, the
    last piece is published by flush(), with what is left."""
    now = [0.0]
    published: list[dict] = []
    ds = DeltaStream(
        published.append, {"task_id": "t"}, interval=0.1, chars=10, hold=True, clock=lambda: now[0]
    )
    ds.write("ab")
    now[0] = 0.5
    ds.write_last("cdefghijklmn")  # old and big enough for a batch of its own: still kept
    ds.flush()
    assert published == []
    assert ds.drain() == [{"task_id": "t", "offset": 0, "delta": "abcdefghijklmn"}]
    assert ds.drain() == []
    plain = DeltaStream(published.append, {"task_id": "t"}, interval=0.1, chars=10, clock=lambda: now[0])
    plain.write_last("abcdefghijklmn")
    assert published == []
    plain.flush()
    assert published == [{"task_id": "t", "offset": 0, "delta": "abcdefghijklmn"}]


def test_kept_batches_are_one_batch_when_written_or_published():
    """Batches cut while kept (size reached before `interval`) join the kept one: written with the outcome,
    or published once the interval has passed, they are one event, offsets continuous."""
    now = [0.0]
    published: list[dict] = []
    ds = DeltaStream(
        published.append, {"task_id": "t"}, interval=0.1, chars=10, hold=True, clock=lambda: now[0]
    )
    ds.write("abcdefghij")  # a batch by size, kept (too soon)
    ds.write("klmnopqrst")  # another: joins it
    ds.write_last("uv")
    assert published == []
    assert ds.drain() == [{"task_id": "t", "offset": 0, "delta": "abcdefghijklmnopqrstuv"}]
    ds.write("0123456789")  # kept again
    now[0] = 0.05
    ds.write("0123456789")  # joins it
    now[0] = 0.2
    ds.write("x")  # old enough: the kept text and this go out as one event
    assert published == [{"task_id": "t", "offset": 22, "delta": "01234567890123456789x"}]
    assert ds.drain() == []


@pytest.fixture
def timers() -> Iterator[TimerQueue]:
    queue = TimerQueue("live-text")
    queue.start()
    yield queue
    queue.stop()


def test_kept_text_is_published_once_the_interval_passes_without_another_write(timers):
    """A model that writes a burst and then pauses: the kept text goes out when `interval` has passed,
    without waiting for the next write (or the outcome) to carry it; once, not again with the outcome."""
    published: list[dict] = []
    ds = DeltaStream(published.append, {"task_id": "t"}, interval=0.05, chars=10, hold=True, timers=timers)
    ds.write("abcdefghijkl")  # big enough for a batch, but too soon after the start: kept
    ds.write("m")  # too little for a batch of its own: pending
    until(lambda: published, why=lambda: "the kept text was never published")
    assert published == [{"task_id": "t", "offset": 0, "delta": "abcdefghijklm"}]
    plain = DeltaStream(published.append, {"task_id": "p"}, interval=0.05, chars=10, timers=timers)
    plain.write("ab")  # too little and too soon: without the timer it would wait for the next write
    until(lambda: len(published) == 2, why=lambda: published)
    assert published[1] == {"task_id": "p", "offset": 0, "delta": "ab"}
    ds.write_last("n")
    ds.flush()
    assert ds.drain() == [{"task_id": "t", "offset": 13, "delta": "n"}]
    assert len(published) == 2


def test_the_outcome_racing_the_timer_publishes_every_piece_once_in_order(timers):
    """The timer takes the kept text and waits for the event log's head (another transaction holds it):
    the stream's lock is free meanwhile, so a transaction that drains the stream does not wait for that
    publish (the lock-order inversion of a timer publishing under the stream's lock); writes meanwhile
    queue behind the timer's batch; flush() (the agent returned, no transaction open) waits for them, and
    drain() then has only what came after. Every character once, offsets in publishing order."""
    head = threading.Lock()  # the event log's head: publishing waits for it, as on either backend
    waiting = threading.Event()
    published: list[dict] = []

    def publish(data: dict) -> None:
        waiting.set()
        with head:
            published.append(data)

    ds = DeltaStream(publish, {"task_id": "t"}, interval=0.05, chars=10, hold=True, timers=timers)
    drained: list[list[dict]] = []
    with head:  # another step's transaction
        ds.write("abcdefghijkl")  # kept; the timer takes it when due and waits for the head
        assert waiting.wait(10), "the timer never published the kept text"
        drain = threading.Thread(target=lambda: drained.append(ds.drain()), daemon=True)
        drain.start()
        drain.join(10)  # does not wait for the publish in flight (which waits for this transaction)
        assert drained == [[]], "drain() waited for the timer's publish"
    waiting.clear()
    until(lambda: published, why=lambda: "the timer's batch was never published")

    now = [0.0]
    ds = DeltaStream(
        publish, {"task_id": "u"}, interval=0.05, chars=10, hold=True, timers=timers, clock=lambda: now[0]
    )
    seen: list[list[dict]] = []
    ending = threading.Event()

    def step() -> None:
        ds.write_last("mn")  # the agent's last text, then it returns
        ending.set()
        ds.flush()
        seen.append(list(published))  # what was published when flush() returned

    with head:
        ds.write("abcdefghijkl")
        now[0] = 0.1  # due: the timer takes it
        assert waiting.wait(10), "the timer never published the kept text"
        now[0] = 0.2
        ds.write("opqrstuvwxyz")  # old enough: queued behind the timer's batch, not published past it
        racer = threading.Thread(target=step, daemon=True)
        racer.start()
        assert ending.wait(10)  # the agent returns while its batches are still in flight
    racer.join(10)
    with head:  # the step's transaction: the outcome with the rest of the text
        rest = ds.drain()
    mine = [d for d in published if d["task_id"] == "u"]
    assert [(d["offset"], d["delta"]) for d in mine] == [(0, "abcdefghijkl"), (12, "opqrstuvwxyz")]
    assert seen == [published], "flush() returned before the batches taken earlier were published"
    assert rest == [{"task_id": "u", "offset": 24, "delta": "mn"}]


@pytest.fixture
def llm_server(config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[VoltorchServer, StubLLM]]:
    stub = StubLLM(lambda prompt: ANSWER)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    srv = VoltorchServer(replace(config, shutdown_grace=1.0, builtin_agents=False)).start()
    yield srv, stub
    srv.stop(grace=1.0)
    stub.close()


def _stream_template(client: voltorch.Client, stub: StubLLM) -> None:
    """One step whose LLM agent (the stub, streaming ANSWER) writes its text live."""
    client.coordination.register_agent(
        "gpt",
        kind="llm",
        capabilities=["documentation"],
        llm=voltorch.LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV),
    )
    client.workflows.register_template(
        voltorch.WorkflowTemplate(
            name="stream",
            steps=[voltorch.Step("write", voltorch.AgentTask("Write", agent_id="gpt"))],
        )
    )


def test_llm_text_streams_through_watch_and_subscribe_in_batches(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        _stream_template(client, stub)
        # The first 100 pieces go at once, the rest only once a first batch was seen live: the text
        # reaches the server over time (not in one read), as from a model writing it. The first pieces
        # come within DELTA_INTERVAL of the task's start (kept for the next batch): they go out once the
        # interval has passed, the model still pausing.
        stub.pace = pace = threading.Semaphore(100)
        run = client.workflows.start("stream")
        live: list[voltorch.WorkflowEvent] = []
        for u in client.workflows.watch(run.execution.id, deltas=True, timeout=30):
            if u.type == "agent.output.delta" and not any(x.type == u.type for x in live):
                pace.release(len(ANSWER))
            live.append(u)
        execution = client.workflows.get(run.execution.id)
        assert execution.status == "completed"
        assert execution.step("write").output == ANSWER  # the final output is unchanged

        deltas = [u for u in live if u.type == "agent.output.delta"]
        assert "".join(u.delta for u in deltas) == ANSWER
        assert [u.data["offset"] for u in deltas] == [
            sum(len(d.delta) for d in deltas[:i]) for i in range(len(deltas))
        ]
        chunks = -(-len(ANSWER) // stub.chunk_chars)
        assert 2 <= len(deltas) <= len(ANSWER) // 200 + 2 < chunks  # batched, not one event per token
        assert all(u.step_id == "write" and u.data["agent_id"] == "gpt" for u in deltas)
        types = [u.type for u in live]
        assert types.index("workflow.step.started") < types.index("agent.output.delta")
        assert max(i for i, t in enumerate(types) if t == "agent.output.delta") < types.index(
            "workflow.step.completed"
        )
        assert stub.requests[0]["stream"] is True

        plain = list(client.workflows.watch(run.execution.id, timeout=30))
        assert plain and all(u.type != "agent.output.delta" and u.delta == "" for u in plain)

        subscribed = []
        for ev in client.events.subscribe(
            types=["agent.output.delta"], correlation_id=execution.correlation_id, from_sequence=1
        ):
            assert isinstance(ev, voltorch.Event)
            subscribed.append(ev.data["delta"])
            if sum(map(len, subscribed)) >= len(ANSWER):
                break
        assert "".join(subscribed) == ANSWER


def test_a_burst_then_a_pause_is_shown_live_before_the_model_goes_on(llm_server):
    """A model that writes a few words right at the start (within DELTA_INTERVAL: kept), then pauses:
    the words are published once the interval has passed, while the model still pauses (the stub sends
    the rest only once the test has seen them through WatchExecution), not held back until the model
    writes again or ends. Then the rest, every character once, before the step's outcome."""
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        _stream_template(client, stub)
        stub.pace = pace = threading.Semaphore(2)  # three pieces at once, then nothing until released
        burst = ANSWER[: 3 * stub.chunk_chars]
        run = client.workflows.start("stream")
        live: list[voltorch.WorkflowEvent] = []
        seen = ""
        released = False
        for u in client.workflows.watch(run.execution.id, deltas=True, timeout=30):
            live.append(u)
            if u.type != "agent.output.delta" or released:
                continue
            seen += u.delta
            assert burst.startswith(seen), "the burst was not shown live: it came with what followed it"
            if seen == burst:
                released = True
                pace.release(len(ANSWER))
        assert released
        execution = client.workflows.get(run.execution.id)
        assert execution.status == "completed" and execution.step("write").output == ANSWER
        deltas = [u for u in live if u.type == "agent.output.delta"]
        assert "".join(u.delta for u in deltas) == ANSWER
        assert [u.data["offset"] for u in deltas] == [
            sum(len(d.delta) for d in deltas[:i]) for i in range(len(deltas))
        ]
        types = [u.type for u in live]
        assert max(i for i, t in enumerate(types) if t == "agent.output.delta") < types.index(
            "workflow.step.completed"
        )


def test_streaming_example_prints_the_text_as_it_arrives(server):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "streaming.py"), server.target],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "sdk")},
    )
    assert out.returncode == 0, out.stderr
    assert "live token streams" in out.stdout and "characters streamed" in out.stdout
