"""Live token streams: a streaming agent's text published as batched `agent.output.delta` events,
delivered by WatchExecution (watch(deltas=True)) and Subscribe; the final output unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import voltorch
from openai_stub import StubLLM
from voltorch_server.app import VoltorchServer
from voltorch_server.components.coordination import DeltaStream
from voltorch_server.config import Config

ROOT = Path(__file__).resolve().parents[2]
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
def llm_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[VoltorchServer, StubLLM]]:
    stub = StubLLM(lambda prompt: ANSWER)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    cfg = Config(
        host="127.0.0.1", port=0, db=str(tmp_path / "s.db"), shutdown_grace=1.0, builtin_agents=False
    )
    srv = VoltorchServer(cfg).start()
    yield srv, stub
    srv.stop(grace=1.0)
    stub.close()


def test_llm_text_streams_through_watch_and_subscribe_in_batches(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
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
        # The first 100 pieces go at once, the rest only once a first batch was seen live: the text
        # reaches the server over time (not in one read), as from a model writing it.
        stub.pace = pace = threading.Semaphore(100)
        # A model takes a moment before its first token: text that comes within DELTA_INTERVAL of the
        # task's start is kept for the next batch (or the outcome), and the first 100 pieces must make a
        # live batch of their own for the stub to go on.
        stub.latency = 0.15
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
