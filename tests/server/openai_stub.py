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
    prompt being the request's messages joined. Records every request, prompt and arrival time."""

    def __init__(self, answer: Callable[[str], str] = lambda prompt: "default") -> None:
        self.answer = answer
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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
