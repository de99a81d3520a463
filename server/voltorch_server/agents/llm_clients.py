"""Where an LLM agent's calls run (`LlmCalls`: one attempt's HTTP exchange, a `CallRequest` in, an `Answer`
out) and the `openai` clients that make them. `InProcessCalls` makes them on the calling thread, through the
clients of each endpoint (API key + base URL): as many as its calls in flight need, each taking at most
`per_client` calls at once. The server's LLM call process (llm_process.py) runs an InProcessCalls too.

Why not one client: its httpx connection pool re-assigns requests to connections with a pass over every
connection each time a request comes or goes; with ~128 calls in flight in one pool that pass was ~9 %
of the server's CPU (bench suite llm), 8 % of the agent's instructions per call (bench._callgrind_llm).
Several small pools keep each pass short. The clients share one SSL context: loading the CA bundle is
~35 ms of CPU per client otherwise.

An endpoint's clients are closed (their keep-alive connections with them) once it has had no call in
flight for IDLE_CLOSE seconds, and made afresh on its next call: agents re-registered with another base
URL or key, or a key rotated in the environment, leave no pools behind. The look for idle endpoints is
made by a call, at most once per SWEEP_EVERY seconds (an InProcessCalls that gets no call keeps its
clients until it does, or closes). It knows nothing of agents, so the LLM call process's works the same.

The clients leave out the `X-Stainless-*` headers the `openai` client adds to every request: its language,
version, OS, architecture and runtime (telemetry for OpenAI; some OpenAI-compatible gateways refuse them),
its retry count (always 0: the retries are the agent's) and its read timeout. No endpoint needs them, and
each header is built, merged, validated and sent on every call (httpx and h11 handle a request header by
header): without these nine an LLM call costs ~11 % fewer instructions (bench._callgrind_llm).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import TYPE_CHECKING, Any, Protocol

import httpx2

if TYPE_CHECKING:
    import openai  # imported where it is used (see llm.py's docstring)

from ._values import AgentError, CancelSignal, Reply
from .llm_stream import LiveText, parse, receive

CALLS_PER_CLIENT = 8
IDLE_CLOSE = 300.0  # seconds without a call in flight after which an endpoint's clients are closed
SWEEP_EVERY = 30.0  # at most one look for idle endpoints per this many seconds


@cache
def not_sent() -> dict[str, Any]:
    """The X-Stainless-* headers, left out through each request's `headers` option (the client's own way
    to omit a header it would send: merged last, over its defaults and per-request headers)."""
    import openai

    return {
        name: openai.omit
        for name in (
            "X-Stainless-Lang",
            "X-Stainless-Package-Version",
            "X-Stainless-OS",
            "X-Stainless-Arch",
            "X-Stainless-Runtime",
            "X-Stainless-Runtime-Version",
            "X-Stainless-Async",
            "X-Stainless-Retry-Count",
            "X-Stainless-Read-Timeout",
        )
    }


_ssl_lock = threading.Lock()
_ssl: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The SSL context every LLM client of the process verifies with (httpx's default, made once)."""
    global _ssl
    with _ssl_lock:
        if _ssl is None:
            _ssl = httpx2.create_ssl_context()
        return _ssl


def new_client(key: str, base_url: str) -> openai.OpenAI:
    """A client with no retries of its own (the agent's are visible) on the shared SSL context."""
    import openai

    return openai.OpenAI(
        api_key=key,
        base_url=base_url or None,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(verify=shared_ssl_context()),
    )


class EndpointClients:
    """Clients of one endpoint; lease() lends the least busy one, a new one when every client already
    has `per_client` calls in flight. Once closed (retired idle, or at close()) it lends none."""

    def __init__(
        self,
        make: Callable[[], openai.OpenAI],
        per_client: int = CALLS_PER_CLIENT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._make = make
        self.per_client = max(1, per_client)
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: list[openai.OpenAI] = []
        self._busy: list[int] = []  # calls in flight per client, by index
        self.peak_busy = 0  # the most calls one client had in flight
        self.in_flight = 0  # calls in flight on all its clients
        self.idle_since = clock()  # when in_flight last fell to 0
        self.closed = False

    def lease(self) -> _Lease | None:
        """`with clients.lease() as client:` one call on the least busy client; None once closed (its
        InProcessCalls has dropped it: ask that for the endpoint's clients again)."""
        with self._lock:
            if self.closed:
                return None
            busy = self._busy
            i = min(range(len(busy)), key=busy.__getitem__, default=-1)
            if i < 0 or busy[i] >= self.per_client:
                self._clients.append(self._make())
                busy.append(0)
                i = len(busy) - 1
            busy[i] += 1
            self.in_flight += 1
            self.peak_busy = max(self.peak_busy, busy[i])
            return _Lease(self, busy, i, self._clients[i])

    def _give_back(self, busy: list[int], i: int) -> None:
        now = self.clock()
        with self._lock:
            busy[i] -= 1  # the list the lease came from (close() may have replaced it since)
            self.in_flight -= 1
            if not self.in_flight:
                self.idle_since = now

    def retire(self, now: float, idle: float) -> bool:
        """Close to leases if no call has been in flight for `idle` seconds; True if so (then close() it).
        Under the same lock as lease(): a call either has its lease first (and keeps the clients) or
        finds them closed and asks again."""
        with self._lock:
            if self.closed or self.in_flight or now - self.idle_since < idle:
                return False
            self.closed = True
            return True

    def __len__(self) -> int:
        return len(self._clients)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            clients, self._clients, self._busy = self._clients, [], []
        for c in clients:
            try:
                c.close()
            except Exception:
                pass


class _Lease:
    """One call's hold on a client (a class, not a generator: it is taken on every LLM call)."""

    __slots__ = ("_busy", "_clients", "_i", "client")

    def __init__(self, clients: EndpointClients, busy: list[int], i: int, client: openai.OpenAI):
        self._clients, self._busy, self._i, self.client = clients, busy, i, client

    def __enter__(self) -> openai.OpenAI:
        return self.client

    def __exit__(self, *exc: Any) -> None:
        self._clients._give_back(self._busy, self._i)


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One attempt of a Chat Completion call: what goes on the wire and how long it may take. `final`: the
    answer is the agent's output, so the text read with the stream's end is the task's last."""

    key: str
    base_url: str
    body: dict[str, Any]
    timeout: float
    request_id: str
    final: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answered: its headers (the limiter reads the rate-limit ones), and the reply, or
    the error that says why the answer is not one (malformed, refused)."""

    headers: Mapping[str, str]
    reply: Reply | None
    error: AgentError | None = None


class AnswerStopped(AgentError):
    """The endpoint answered, and reading its answer stopped: the call was cancelled, or the stream failed
    mid-way (the AgentError it stopped with), or the connection did (`error`: httpx's, say, closed early or
    timed out; the agent handles the call's failure as that error). `headers` are the answer's: the
    endpoint's limiter reads their rate-limit ones as it would a whole answer's. Reported (metrics' error
    type, the endpoint's last error) as the AgentError it carries: the wrapper is not a kind of failure."""

    type_name = "AgentError"

    def __init__(
        self,
        message: str,
        headers: Mapping[str, str],
        *,
        code: str,
        retryable: bool = False,
        error: Exception | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.headers = headers
        self.error = error

    @classmethod
    def reading(cls, exc: Exception, headers: Mapping[str, str]) -> AnswerStopped:
        """What stopped the reading of an answer with these headers, carrying them."""
        if isinstance(exc, AgentError):
            return cls(exc.message, headers, code=exc.code, retryable=exc.retryable)
        return cls(f"{type(exc).__name__}: {exc}", headers, code="LLM_ERROR", retryable=True, error=exc)

    def __reduce__(self) -> tuple[Any, ...]:
        # An exception pickles and copies as cls(*args) and its state; this one's args lack the headers.
        return (partial(AnswerStopped, code=self.code), (self.message, self.headers), self.__dict__)


class LlmCalls(Protocol):
    """Where an LLM agent's HTTP calls run. `call` raises what the `openai` client raises (status errors,
    timeouts, connection errors), AnswerStopped (an AgentError) for a stream that failed (its connection
    included) or was cancelled mid-way, ValueError for a body that is not JSON."""

    def call(self, request: CallRequest, task: LiveText, cancel: CancelSignal) -> Answer: ...

    def warm(self) -> None:
        """Get ready for calls (an agent with an API key was made)."""

    def describe(self) -> str:
        """Where the calls run, for GetHealth."""
        ...

    def close(self) -> None: ...


class InProcessCalls:
    """The calls on the calling thread, through the `openai` clients of each endpoint (API key + base URL),
    closed once the endpoint has been idle for `idle` seconds (see the module's docstring)."""

    def __init__(
        self,
        per_client: int = CALLS_PER_CLIENT,
        clock: Callable[[], float] = time.monotonic,
        idle: float = IDLE_CLOSE,
    ) -> None:
        self.per_client = per_client
        self.clock = clock
        self.idle = idle
        self._lock = threading.Lock()
        self._endpoints: dict[tuple[str, str], EndpointClients] = {}
        self._next_sweep = clock() + SWEEP_EVERY

    def clients(self, key: str, base_url: str) -> EndpointClients:
        """The clients of one endpoint (made on first use, and again after they were closed idle)."""
        with self._lock:
            clients = self._endpoints.get((key, base_url))
            if clients is None:
                clients = EndpointClients(lambda: new_client(key, base_url), self.per_client, self.clock)
                self._endpoints[(key, base_url)] = clients
            return clients

    def lease(self, key: str, base_url: str) -> _Lease:
        """A client of the endpoint for one call; then, at most once per SWEEP_EVERY seconds, the endpoints
        idle for `idle` seconds are closed (this one, now in flight, is not)."""
        while (lease := self.clients(key, base_url).lease()) is None:
            pass  # closed idle between the look-up and the lease: its clients are made afresh
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        return lease

    def _sweep(self, now: float) -> None:
        with self._lock:
            if now < self._next_sweep:  # another call swept meanwhile
                return
            self._next_sweep = now + SWEEP_EVERY
            idle = [k for k, clients in self._endpoints.items() if clients.retire(now, self.idle)]
            retired = [self._endpoints.pop(k) for k in idle]
        for clients in retired:
            clients.close()

    def open_endpoints(self) -> int:
        """Endpoints with clients open."""
        with self._lock:
            return sum(1 for clients in self._endpoints.values() if len(clients))

    def warm(self) -> None:
        pass  # a client is made on its endpoint's first call

    def describe(self) -> str:
        return (
            f"in the server's process (llm_in_process), {self.open_endpoints()} endpoints with clients open"
        )

    def call(self, request: CallRequest, task: LiveText, cancel: CancelSignal) -> Answer:
        # The client's documented request method (`client.post`, "undocumented endpoints") with the body as
        # the plain JSON it already is: `chat.completions.create` walks every parameter through its
        # TypedDict transform first, a tenth of the server's CPU per call when hundreds of calls run at
        # once (bench suite llm). The request on the wire is the same. The URL is given whole (the client's
        # base URL + the path, as the client would join them): joining a relative path re-parses the base
        # URL on every call.
        with self.lease(request.key, request.base_url) as client:
            raw = client.post(
                f"{client.base_url}chat/completions",
                cast_to=httpx2.Response,
                body=request.body,
                options={
                    "timeout": request.timeout,
                    "idempotency_key": request.request_id,
                    "headers": not_sent(),
                },
                stream=True,
            )
            try:
                chunks = receive(raw, task, cancel, request.final)
            except Exception as exc:  # the endpoint answered: its headers go with the error
                raise AnswerStopped.reading(exc, raw.headers) from exc
        try:
            return Answer(raw.headers, parse(chunks))
        except AgentError as exc:
            return Answer(raw.headers, None, exc)

    def close(self) -> None:
        with self._lock:
            endpoints, self._endpoints = list(self._endpoints.values()), {}
        for clients in endpoints:
            clients.close()
