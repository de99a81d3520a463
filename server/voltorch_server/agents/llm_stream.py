"""Reading an LLM endpoint's answer: a streamed Chat Completion's server-sent events (or a whole JSON
completion) to the chunks, the live text handed to the task, and the reply assembled from them.

Plain functions of the answer, no client: the server runs them where the HTTP call runs (its own
threads, or the LLM call process, llm_process.py)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from ._values import AgentError, CancelSignal, Reply, TokenUsage, ToolCall


class LiveText(Protocol):
    """Where an answer's text goes as it is read: the task's (AgentTask.delta), or in the LLM call process
    the frames that carry it to the server."""

    def delta(self, text: str, *, last: bool = False) -> None: ...


def receive(response: Any, task: LiveText, cancel: CancelSignal, final: bool = False) -> list[dict[str, Any]]:
    """Read a streamed answer to its end, handing the text to the task as it arrives. The server-sent
    events are read as plain JSON (building the client's typed chunk per event costs CPU for the few
    fields used here), and per piece the socket gave, not per event: the complete `data:` lines of a piece
    are decoded in one json.loads and their text handed over as one delta. An endpoint that answers a
    stream request with one JSON completion is read as a single chunk. `final`: the text read with the
    stream's end is handed over as the task's last (written with the outcome, not published alone: an
    answer that arrives in one read, as most short ones do, costs no write of its own)."""
    chunks: list[dict[str, Any]] = []
    kind = response.headers.get("content-type", "")
    try:
        if not kind.startswith("text/event-stream"):
            return _whole(response, kind, task, final)
        rest = b""
        for piece in response.iter_bytes():
            if cancel.is_set():
                raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED")
            lines = (rest + piece).split(b"\n")
            rest = lines.pop()  # an unfinished line waits for the next piece
            if read_events(lines, chunks, task, final):
                return chunks
        read_events([rest], chunks, task, final, end=True)
    finally:
        response.close()
    return chunks


def read_events(
    lines: list[bytes], chunks: list[dict[str, Any]], task: LiveText, final: bool = False, end: bool = False
) -> bool:
    """Add the events of these complete lines to `chunks` and their text to the task's live output; True
    at the end of the stream ([DONE]). `final`: text read with the end (`end`: the body ended) is the
    task's last."""
    data: list[bytes] = []
    done = False
    for line in lines:
        if line.startswith(b"data:"):
            value = line[5:].strip()
            if value == b"[DONE]":
                done = True
                break
            data.append(value)
    if not data:
        return done
    try:
        decoded = json.loads(b"[" + b",".join(data) + b"]")
    except ValueError:
        decoded = [_event(d) for d in data]  # names the event that is not JSON
    text: list[str] = []
    for chunk in decoded:
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("error"), dict):
            message = chunk["error"].get("message") or "error"
            raise AgentError(f"LLM endpoint failed mid-stream: {message}", code="LLM_ERROR", retryable=True)
        chunks.append(chunk)
        for choice in chunk.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
            if isinstance(piece, str):
                text.append(piece)
    if text:
        task.delta("".join(text), last=final and (done or end))
    return done


def _event(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise AgentError(
            f"LLM endpoint returned a malformed response: an event is not JSON: {data[:200]!r}",
            code="INVALID_OUTPUT",
        ) from None


def _whole(response: Any, kind: str, task: LiveText, final: bool = False) -> list[dict[str, Any]]:
    """A completion that came whole instead of streamed, as one chunk."""
    response.read()
    try:
        body = response.json()
    except ValueError:
        raise AgentError(
            f"LLM endpoint returned a malformed response: the body is not JSON server-sent events "
            f"(content-type {kind or 'missing'})",
            code="INVALID_OUTPUT",
        ) from None
    if not isinstance(body, dict):
        return []
    choices = [
        {**c, "delta": c.get("message") or {}} for c in body.get("choices") or () if isinstance(c, dict)
    ]
    for c in choices:
        if isinstance(c["delta"].get("content"), str):
            task.delta(c["delta"]["content"], last=final)
    return [{**body, "choices": choices}] if "choices" in body else [body]


def _count(value: Any) -> int:
    """A count from the JSON (0 when absent or not a positive number)."""
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def parse(chunks: list[dict[str, Any]]) -> Reply:
    """The answer assembled from its chunks: text, tool calls (their pieces joined by index), usage."""
    parts: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    seen_choice = False
    usage = TokenUsage()
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            seen_choice = True
            raw_delta = choice.get("delta")
            delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
            piece = delta.get("content")
            if isinstance(piece, str):
                parts.append(piece)
            said_no = delta.get("refusal")
            if isinstance(said_no, str):
                refusal.append(said_no)
            for tc in delta.get("tool_calls") or ():
                if not isinstance(tc, dict):
                    continue
                call = calls.setdefault(_count(tc.get("index")), {"id": "", "name": "", "arguments": ""})
                raw_fn = tc.get("function")
                fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
                call["id"] = tc.get("id") or call["id"]
                call["name"] += fn.get("name") or ""
                call["arguments"] += fn.get("arguments") or ""
        u = chunk.get("usage")
        if isinstance(u, dict):
            usage = TokenUsage(
                _count(u.get("prompt_tokens")),
                _count(u.get("completion_tokens")),
                _count(u.get("total_tokens")),
            )
    if not seen_choice:
        raise AgentError(
            "LLM endpoint returned a malformed response: no choices (is base_url an OpenAI-compatible "
            "/v1 endpoint?)",
            code="INVALID_OUTPUT",
        )
    tool_calls = tuple(
        ToolCall(c["id"] or f"call_{i}", c["name"], parse_arguments(c["arguments"], c["name"]))
        for i, c in sorted(calls.items())
    )
    if not parts and not tool_calls:
        if refusal:
            raise AgentError(f"the model refused: {''.join(refusal)}", code="LLM_REFUSED")
        raise AgentError(
            "LLM endpoint returned a malformed response: choices[0].message.content is missing",
            code="INVALID_OUTPUT",
        )
    return Reply("".join(parts), tool_calls, usage)


def parse_arguments(raw: str | None, name: str) -> dict[str, Any]:
    """A tool call's JSON arguments (an object); a model that sent something else gets a clear error."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise AgentError(
            f"the model called tool {name!r} with arguments that are not JSON: {raw[:200]!r}",
            code="INVALID_OUTPUT",
        ) from None
    if not isinstance(value, dict):
        raise AgentError(f"the model called tool {name!r} with non-object arguments", code="INVALID_OUTPUT")
    return value
