"""A local OpenAI-compatible /v1/chat/completions endpoint (127.0.0.1:0) for the LLM paths, driven by the
real `openai` client: answers from a script of responses first, then by the prompt."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Response = tuple[int, dict[str, str], object]  # status, headers, JSON body (or raw bytes)


def completion(content: str, prompt_tokens: int = 11, completion_tokens: int = 7) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "stub-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class StubLLM:
    """`script` responses are sent first, in order; after that 200 with completion(answer(prompt)), the
    prompt being the request's messages joined. Records every request, prompt and arrival time.

    Like a real server under load: each answer takes `latency` seconds (and waits for `gate` when one is
    given); with `capacity`, a call arriving while `capacity` calls are in flight is answered 429 at once
    with `retry-after-ms`. Counts `peak_in_flight`, `rejected` (429s sent) and `served`."""

    def __init__(
        self,
        answer: Callable[[str], str] = lambda prompt: "default",
        *,
        latency: float = 0.0,
        capacity: int = 0,
        retry_after_ms: int = 100,
        gate: threading.Event | None = None,
    ) -> None:
        self.answer = answer
        self.latency, self.capacity, self.retry_after_ms, self.gate = latency, capacity, retry_after_ms, gate
        self.script: list[Response] = []
        self.requests: list[dict] = []
        self.prompts: list[str] = []
        self.times: list[float] = []
        self.in_flight = self.peak_in_flight = self.rejected = self.served = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when a call arrives or ends
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                prompt = "\n".join(m.get("content") or "" for m in body.get("messages", []))
                with stub.lock:
                    stub.requests.append(
                        {"path": self.path, "auth": self.headers.get("authorization"), **body}
                    )
                    stub.prompts.append(prompt)
                    stub.times.append(time.monotonic())
                    full = stub.capacity and stub.in_flight >= stub.capacity
                    if full:
                        stub.rejected += 1
                        scripted = (
                            429,
                            {"retry-after-ms": str(stub.retry_after_ms)},
                            {"error": {"message": "too many requests in flight", "type": "rate_limit"}},
                        )
                    else:
                        scripted = stub.script.pop(0) if stub.script else None
                        stub.in_flight += 1
                        stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                    stub.changed.notify_all()
                if not full:
                    try:
                        if stub.gate is not None:
                            stub.gate.wait(30)
                        if stub.latency:
                            time.sleep(stub.latency)  # the model "thinking": what the stub simulates
                    finally:
                        with stub.lock:
                            stub.in_flight -= 1
                            stub.served += 1
                            stub.changed.notify_all()
                status, headers, payload = scripted or (200, {}, completion(stub.answer(prompt)))
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # hundreds of calls connect at once
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, predicate: Callable[[StubLLM], bool], timeout: float = 10.0) -> bool:
        """Wait (bounded) until predicate(stub) holds, re-checked whenever a call arrives or ends."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
