"""A local OpenAI-compatible /v1/chat/completions endpoint (127.0.0.1:0) for the LLM paths, driven by the
real `openai` client: answers from a script of responses first, then by the prompt. A request with
`"stream": true` is answered with server-sent events: the same completion cut into chunks of `chunk_chars`
characters (tool calls in one chunk), then, with stream_options.include_usage, a usage chunk.

`python openai_stub.py --latency 0.3 --capacity 128` serves it in its own process (the bench: its GIL is
not the client's), answering the complete workflow's prompts; it prints {"base_url": ...} and serves until
stdin closes; GET /stats gives its counters, POST /stats/reset zeroes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Response = tuple[int, dict[str, str], object]  # status, headers, JSON body (or raw bytes)


def completion(
    content: str | None,
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    tool_calls: list[dict] | None = None,
) -> dict:
    """A chat completion; tool_calls are (name, arguments dict) pairs as {"name", "arguments"}."""
    message: dict = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for i, c in enumerate(tool_calls)
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "stub-model",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
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
        keep_alive: bool = False,
        chunk_chars: int = 8,
        pace: threading.Semaphore | None = None,
    ) -> None:
        """keep_alive: answer in HTTP/1.1 and keep connections open, as real endpoints do (the bench);
        by default each call has its own connection (HTTP/1.0). pace: a streamed answer sends the chunk
        after one that carries text only once pace is released (a wait of 10 s at most, then no more
        pacing), e.g. by the client's on_delta, so each piece of text reaches the client on its own, as
        from a model writing slowly."""
        self.answer = answer
        self.chunk_chars = chunk_chars
        self.pace = pace
        self.latency, self.capacity, self.retry_after_ms, self.gate = latency, capacity, retry_after_ms, gate
        self.script: list[Response] = []
        self.requests: list[dict] = []
        self.prompts: list[str] = []
        self.headers: list[dict[str, str]] = []  # each request's, names in lower case
        self.times: list[float] = []
        self.in_flight = self.peak_in_flight = self.rejected = self.served = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when a call arrives or ends
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def _send_json(self, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._send_json(stub.stats())

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/stats/reset":
                    stub.reset_stats()
                    self._send_json(stub.stats())
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                prompt = "\n".join(m.get("content") or "" for m in body.get("messages", []))
                with stub.lock:
                    stub.requests.append(
                        {"path": self.path, "auth": self.headers.get("authorization"), **body}
                    )
                    stub.prompts.append(prompt)
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    stub.times.append(time.monotonic())
                    full = stub.capacity and stub.in_flight >= stub.capacity
                    if full:
                        stub.rejected += 1
                        scripted: tuple[int, dict[str, str], object] | None = (
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
                            time.sleep(stub.latency)  # bounded: the model "thinking", what the stub simulates
                    finally:
                        with stub.lock:
                            stub.in_flight -= 1
                            stub.served += 1
                            stub.changed.notify_all()
                status, headers, payload = scripted or (200, {}, completion(stub.answer(prompt)))
                if body.get("stream") and status == 200 and isinstance(payload, dict):
                    self._stream(payload, bool((body.get("stream_options") or {}).get("include_usage")))
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "content-type" not in headers:  # a script may answer e.g. raw text/event-stream
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, payload: dict, include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")  # the stream ends with the connection
                self.end_headers()
                self.close_connection = True
                wrote_text = False
                for chunk in stub.chunks(payload, include_usage):
                    pace = stub.pace
                    if wrote_text and pace is not None and not pace.acquire(timeout=10):
                        stub.pace = None  # nobody releases it: send the rest at once
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                    wrote_text = any(
                        (c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()
                    )
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # hundreds of calls connect at once
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def chunks(self, payload: dict, include_usage: bool) -> list[dict]:
        """A completion as the chunks of a stream (a payload that is no completion: one chunk as it is)."""
        if not isinstance(payload.get("choices"), list):
            return [payload]
        head = {k: payload.get(k) for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        out = []
        for choice in payload["choices"]:
            message = choice.get("message") or {}
            content = message.get("content")
            step = max(1, self.chunk_chars)
            pieces = [content[i : i + step] for i in range(0, len(content), step)] if content else []
            for j, piece in enumerate(pieces):
                delta = {"role": "assistant", "content": piece} if j == 0 else {"content": piece}
                out.append({**head, "choices": [{"index": choice.get("index", 0), "delta": delta}]})
            last: dict = {} if pieces else {"role": "assistant"}
            if message.get("tool_calls"):
                last["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
            if message.get("refusal"):
                last["refusal"] = message["refusal"]
            end = {
                "index": choice.get("index", 0),
                "delta": last,
                "finish_reason": choice.get("finish_reason"),
            }
            out.append({**head, "choices": [end]})
        if include_usage and payload.get("usage"):
            out.append({**head, "choices": [], "usage": payload["usage"]})
        return out

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "rejected": self.rejected,
                "served": self.served,
            }

    def reset_stats(self) -> None:
        with self.lock:
            self.peak_in_flight, self.rejected, self.served = self.in_flight, 0, 0

    def wait_for(self, predicate: Callable[[StubLLM], bool], timeout: float = 10.0) -> bool:
        """Wait (bounded) until predicate(stub) holds, re-checked whenever a call arrives or ends."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def complete_workflow_answer(prompt: str) -> str:
    """JSON in the shape each step of the complete workflow asks for; two independent tasks."""
    if "senior software analyst" in prompt:
        return '{"summary": "calc", "requirements": [], "components": [], "risks": []}'
    if "technical lead" in prompt:
        return (
            '{"tasks": [{"id": "task-1", "title": "Core", "description": "d", "capability": "coding",'
            ' "depends_on": []}, {"id": "task-2", "title": "Tests", "description": "d",'
            ' "capability": "testing", "depends_on": []}]}'
        )
    if "Carry out this task" in prompt:
        return '{"task_id": "task-1", "deliverable": "done", "files": [], "notes": []}'
    if "code reviewer" in prompt:
        return '{"approved": true, "score": 0.9, "findings": []}'
    return '{"summary": "# Report"}'


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="a local OpenAI-compatible endpoint answering the complete workflow"
    )
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--capacity", type=int, default=0)
    p.add_argument("--retry-after-ms", type=int, default=100)
    p.add_argument("--keep-alive", action="store_true", help="HTTP/1.1 keep-alive, as real endpoints")
    args = p.parse_args(argv)
    stub = StubLLM(
        complete_workflow_answer,
        latency=args.latency,
        capacity=args.capacity,
        retry_after_ms=args.retry_after_ms,
        keep_alive=args.keep_alive,
    )
    print(json.dumps({"base_url": stub.base_url}), flush=True)
    sys.stdin.read()  # until the parent closes it
    stub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
