"""The priority gate (gate.py): readers wait while a writer is inside and go on when the last one leaves; a
writer's own reads pass; waits are bounded. Composed: the SQLite writer lock's holder is its writer, the
LLM agents' answers are read as its readers (agents/llm_transport.py), and LLM calls still complete,
time out and cancel as before."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_stub import StubLLM, completion
from polling import until
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal
from voltorch_server.agents.llm import LlmAgent, LlmDefaults, LlmSettings
from voltorch_server.gate import PriorityGate
from voltorch_server.storage import Database

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
WAIT = 10.0


class _Reader(threading.Thread):
    """`gate.wait(timeout)` on its own thread; `passed` once it returned (`result` its answer)."""

    def __init__(self, gate: PriorityGate, timeout: float | None = None):
        super().__init__(daemon=True)
        self.gate, self.timeout = gate, timeout
        self.passed = threading.Event()
        self.result: bool | None = None

    def run(self) -> None:
        self.result = self.gate.wait(self.timeout)
        self.passed.set()


def _waiting_reader(gate: PriorityGate, timeout: float | None = None) -> _Reader:
    """A reader started while the gate is closed, once it is waiting."""
    before = gate.waits
    r = _Reader(gate, timeout)
    r.start()
    until(lambda: gate.waits > before or r.passed.is_set(), WAIT)
    return r


def test_a_reader_passes_an_open_gate():
    gate = PriorityGate()
    assert gate.wait() is True and gate.waits == 0


def test_readers_wait_while_a_writer_is_inside_and_go_on_when_it_leaves():
    gate = PriorityGate()
    gate.close()
    readers = [_waiting_reader(gate) for _ in range(3)]
    assert gate.waits == 3 and not any(r.passed.is_set() for r in readers)
    gate.open()
    for r in readers:
        assert r.passed.wait(WAIT) and r.result is True
    assert gate.writers == 0


def test_overlapping_writers_keep_readers_waiting_until_the_last_one_leaves():
    gate = PriorityGate()
    gate.close()
    other_in, other_out = threading.Event(), threading.Event()

    def other_writer() -> None:
        gate.close()
        other_in.set()
        other_out.wait(WAIT)
        gate.open()

    t = threading.Thread(target=other_writer, daemon=True)
    t.start()
    assert other_in.wait(WAIT)
    reader = _waiting_reader(gate)
    gate.open()  # one writer is still inside
    assert gate.writers == 1 and not reader.passed.is_set()
    other_out.set()
    assert reader.passed.wait(WAIT) and reader.result is True
    t.join(WAIT)


def test_a_writers_own_wait_passes_and_writers_nest():
    """The holder re-entering (a nested hold, or reading an answer itself) never waits for itself."""
    gate = PriorityGate()
    gate.close()
    gate.close()
    assert gate.wait() is True and gate.waits == 0  # its own thread: no deadlock
    gate.open()
    reader = _waiting_reader(gate)  # still closed: the outer hold is inside
    assert not reader.passed.is_set()
    gate.open()
    assert reader.passed.wait(WAIT) and reader.result is True


def test_a_readers_wait_is_bounded():
    gate = PriorityGate()
    gate.close()
    reader = _Reader(gate, timeout=0.01)
    reader.start()
    assert reader.passed.wait(WAIT) and reader.result is False  # priority, not exclusion
    gate.open()


def test_open_without_close_is_an_error():
    gate = PriorityGate()
    with pytest.raises(RuntimeError, match="without close"):
        gate.open()
    gate.close()
    t = threading.Thread(target=lambda: pytest.raises(RuntimeError, gate.open), daemon=True)
    t.start()  # another thread's open() is not this writer's
    t.join(WAIT)
    assert gate.writers == 1
    gate.open()


@pytest.fixture
def gated_db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "gate.db", gate=PriorityGate())
    with d.write() as tx:
        tx.execute("CREATE TABLE t (v TEXT)")
    yield d
    d.close()


def test_the_writer_lock_holder_closes_the_gate_once_however_deep(gated_db):
    gate = gated_db.gate
    assert gate is not None
    seen: list[int] = []

    def after() -> None:  # a write from a callback, under the same hold: re-entrant
        with gated_db.write() as inner:
            inner.execute("INSERT INTO t VALUES ('after')")
            seen.append(gate.writers)
            assert gate.wait() is True

    with gated_db.write() as tx:
        assert gate.writers == 1
        reader = _waiting_reader(gate)
        with gated_db.writer_lock:  # re-entrant: the same hold
            assert gate.writers == 1 and gate.wait() is True
        tx.execute("INSERT INTO t VALUES ('outer')")
        tx.after_commit(after)
        assert not reader.passed.is_set()
    assert reader.passed.wait(WAIT) and gate.writers == 0 and seen == [1]
    assert [r[0] for r in gated_db.query("SELECT v FROM t")] == ["outer", "after"]
    with gated_db.writer_lock:
        assert gate.writers == 1
    assert gate.writers == 0


def test_a_failed_write_opens_the_gate(gated_db):
    with pytest.raises(ValueError), gated_db.write():
        raise ValueError("boom")
    assert gated_db.gate is not None and gated_db.gate.writers == 0


def test_group_commit_parts_open_the_gate(gated_db):
    """Transactions that share a COMMIT each close and open the gate around their own hold."""
    gate = gated_db.gate
    assert gate is not None
    done = []

    def part(i: int) -> None:
        with gated_db.write(group=True) as tx:
            tx.execute("INSERT INTO t VALUES (?)", (str(i),))
        done.append(i)

    threads = [threading.Thread(target=part, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(done) == list(range(8)) and gate.writers == 0
    assert gated_db.writer_holds >= 8 and gated_db.writer_calls >= 8 * 2


# -- LLM calls read as the gate's readers -------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    s = StubLLM()
    yield s
    s.close()


def _agent(stub: StubLLM, gate: PriorityGate, retries: int = 2, timeout: float = 5) -> LlmAgent:
    return LlmAgent(
        LlmSettings(base_url=stub.base_url, api_key_env=KEY_ENV),
        LlmDefaults(model="stub-model", max_retries=retries, timeout=timeout, read_gate=gate),
        env={KEY_ENV: "sk-test-123"},
    )


def _task() -> AgentTask:
    return AgentTask(task_id="c:0", coordination_id="c", text="Say hi")


def test_an_llm_call_through_an_open_gate_answers_as_before(stub):
    stub.script.append((200, {}, completion("Hello there")))
    gate = PriorityGate()
    out = _agent(stub, gate).run(_task(), CancelSignal())
    assert out.output == "Hello there" and out.usage.total_tokens == 18 and gate.waits == 0


def test_an_answer_read_while_a_writer_is_inside_waits_for_it():
    """The call's reading thread waits at the gate once the answer arrived, and goes on when it opens."""
    release = threading.Event()
    stub = StubLLM(gate=release)  # the stub answers once released
    try:
        gate = PriorityGate()
        agent = _agent(stub, gate)
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(agent.run(_task(), CancelSignal()).output))
        t.daemon = True
        t.start()
        until(lambda: stub.in_flight == 1, WAIT)
        gate.close()  # a writer is inside when the answer comes
        release.set()
        until(lambda: gate.waits >= 1 or result, WAIT)
        assert gate.waits >= 1
        gate.open()
        t.join(WAIT)
        assert result == ["default"]
    finally:
        stub.close()


def test_a_gate_that_stays_closed_delays_a_call_but_never_stops_it(stub):
    """Back-to-back writers cannot starve the answers: each wait is bounded (llm_transport.MAX_WAIT)."""
    gate = PriorityGate()
    stop = threading.Event()
    closed = threading.Event()

    def writer() -> None:
        gate.close()
        closed.set()
        stop.wait(WAIT * 3)
        gate.open()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert closed.wait(WAIT)
    try:
        stub.script.append((200, {}, completion("still answered")))
        assert _agent(stub, gate).run(_task(), CancelSignal()).output == "still answered"
        assert gate.waits >= 2  # before sending, and once the answer's head came at least
    finally:
        stop.set()
        t.join(WAIT)


def test_a_gated_call_still_times_out():
    stub = StubLLM(latency=2.0)
    try:
        with pytest.raises(AgentError) as exc:
            _agent(stub, PriorityGate(), retries=0, timeout=0.2).run(_task(), CancelSignal())
        assert exc.value.code == "LLM_UNAVAILABLE" and "Timeout" in exc.value.message
    finally:
        stub.close()


def test_a_gated_call_still_cancels(stub):
    stub.script.append((429, {"retry-after": "30"}, {"error": {"message": "later"}}))
    cancel = CancelSignal()
    with pytest.raises(AgentError) as exc:
        agent = _agent(stub, PriorityGate())
        threading.Timer(0.05, cancel.set, args=("user",)).start()
        agent.run(_task(), cancel)
    assert exc.value.code == "CANCELLED"
