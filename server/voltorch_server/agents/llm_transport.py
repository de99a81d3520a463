"""The LLM clients' HTTP transport: the threads reading answers are a priority gate's readers.

With ~128 calls in flight, an answer's bytes arriving wake a thread that parses them (h11, the `openai`
client, the server-sent events' JSON): Python that competes for the GIL with the thread holding the
database's writer lock, which every workflow step waits for. Through this transport a reading thread
is a reader of the server's `PriorityGate` (gate.py): each time a blocking read returns (the response's
head, then each piece of its body), it waits while the writer lock's holder runs, then handles the bytes.

Built from httpx's public transport API: any `httpx2.BaseTransport` inside (the default
`httpx2.HTTPTransport`), its response's byte stream wrapped. The request's own sending (connect, write,
the response's head) is the inner transport's; the transport waits at the gate before it and once the head
has arrived (the agent waits once more before the `openai` client builds the request: llm.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2

from ..gate import PriorityGate

# Seconds a reading thread waits at most for the writers to leave: priority, not exclusion (a stream of
# back-to-back writers never starves the answers the next steps wait for).
MAX_WAIT = 0.05


class GatedTransport(httpx2.BaseTransport):
    """`inner`'s requests, their answers read as readers of `gate`."""

    def __init__(self, inner: httpx2.BaseTransport, gate: PriorityGate, *, max_wait: float = MAX_WAIT):
        self._inner = inner
        self.gate = gate
        self.max_wait = max_wait

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.gate.wait(self.max_wait)  # sending is Python too (h11, connecting): not while a writer runs
        response = self._inner.handle_request(request)  # blocking until the head has arrived
        self.gate.wait(self.max_wait)
        stream = _GatedStream(response.stream, self.gate, self.max_wait)  # type: ignore[arg-type]
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class _GatedStream(httpx2.SyncByteStream):
    """A response body whose reader waits at the gate each time a read returns."""

    def __init__(self, inner: httpx2.SyncByteStream, gate: PriorityGate, max_wait: float):
        self._inner = inner
        self._gate = gate
        self._max_wait = max_wait

    def __iter__(self) -> Iterator[bytes]:
        gate, max_wait = self._gate, self._max_wait
        for chunk in self._inner:
            gate.wait(max_wait)
            yield chunk

    def close(self) -> None:
        self._inner.close()
