"""A local OpenAI-compatible /v1/chat/completions endpoint (127.0.0.1:0) for the LLM paths, driven by the
real `openai` client: answers from a script of responses first, then by the prompt. A request with
`"stream": true` is answered with server-sent events: the same completion cut into chunks of `chunk_chars`
characters (tool calls in one chunk), then, with stream_options.include_usage, a usage chunk."""

from __future__ import annotations

import json
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
    prompt being the request's messages joined. Records every request, prompt and arrival time."""

    def __init__(self, answer: Callable[[str], str] = lambda prompt: "default", chunk_chars: int = 8) -> None:
        self.answer = answer
        self.chunk_chars = chunk_chars
        self.script: list[Response] = []
        self.requests: list[dict] = []
        self.prompts: list[str] = []
        self.times: list[float] = []
        self.lock = threading.Lock()
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
                    scripted = stub.script.pop(0) if stub.script else None
                status, headers, payload = scripted or (200, {}, completion(stub.answer(prompt)))
                if body.get("stream") and status == 200 and isinstance(payload, dict):
                    self._stream(payload, bool((body.get("stream_options") or {}).get("include_usage")))
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, payload: dict, include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for chunk in stub.chunks(payload, include_usage):
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
