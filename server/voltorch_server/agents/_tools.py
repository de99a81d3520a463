"""The function-calling loop of a tool-using agent (OpenAI's protocol): ask the model with the tools'
schemas; while it answers with tool calls, run each (a child coordination, through the task's toolbox)
and feed the results back as `tool` messages; its first answer without calls is the output. Bounded by
`max_iterations` model turns. The transcript of calls and results is kept in the structured output.

The model is a function, so the LLM agent (a streamed Chat Completions call) and the offline agent (a
deterministic player of the same protocol, no network) share this loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..telemetry import tracer
from ._values import Reply, ToolCall
from .base import AgentError, AgentOutput, AgentTask, CancelSignal, TokenUsage, ToolSpec

DEFAULT_TOOL_ITERATIONS = 8
MAX_TOOL_ITERATIONS = 50
MAX_RESULT_CHARS = 20_000  # of one tool result fed back to the model


Model = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Reply]


def run_tool_loop(
    task: AgentTask,
    cancel: CancelSignal,
    messages: list[dict[str, Any]],
    names: tuple[str, ...],
    model: Model,
    max_iterations: int,
    parse: Callable[[str], Any],
) -> AgentOutput:
    """Run the loop; `parse(text)` gives the final answer's structured form (None when it has none). A
    failure carries the usage of the calls made before it (AgentError.usage)."""
    used: list[TokenUsage] = []
    try:
        return _loop(task, cancel, messages, names, model, max_iterations, parse, used)
    except AgentError as exc:
        exc.usage = sum(used, TokenUsage())
        raise


def _loop(
    task: AgentTask,
    cancel: CancelSignal,
    messages: list[dict[str, Any]],
    names: tuple[str, ...],
    model: Model,
    max_iterations: int,
    parse: Callable[[str], Any],
    used: list[TokenUsage],
) -> AgentOutput:
    if task.toolbox is None:
        raise AgentError("tools were asked for but this server gives the agent no toolbox", code="TOOL_ERROR")
    specs = task.toolbox.specs(names)
    by_name: dict[str, ToolSpec] = {s.name: s for s in specs}
    schemas = [s.schema() for s in specs]
    limit = min(max_iterations or DEFAULT_TOOL_ITERATIONS, MAX_TOOL_ITERATIONS)
    transcript: list[dict[str, Any]] = []
    usage = TokenUsage()
    for turn in range(limit):
        if cancel.is_set():
            raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED")
        if turn:  # the execution's budget, counting this task's calls so far, allows another call
            task.toolbox.check_budget(task, usage)
        reply = model(messages, schemas)
        usage = usage + reply.usage
        used.append(reply.usage)
        if not reply.tool_calls:
            answer = parse(reply.content)
            structured = {"answer": reply.content if answer is None else answer, "transcript": transcript}
            return AgentOutput(reply.content, structured, usage)
        messages.append(
            {
                "role": "assistant",
                "content": reply.content or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments, sort_keys=True)},
                    }
                    for c in reply.tool_calls
                ],
            }
        )
        for call in reply.tool_calls:
            if call.name not in by_name:
                result_text, entry = (
                    f"error: there is no tool {call.name!r}",
                    {"tool": call.name, "arguments": call.arguments, "error": "unknown tool"},
                )
            else:
                with tracer.start_as_current_span("agent.tool") as span:
                    span.set_attribute("voltorch.tool", call.name)
                    result = task.toolbox.call(task, call.name, call.arguments, cancel)
                    span.set_attribute("voltorch.coordination_id", result.coordination_id)
                usage = usage + result.usage
                used.append(result.usage)
                result_text = f"error: {result.error}" if result.error else result.output
                entry = {
                    "tool": call.name,
                    "arguments": call.arguments,
                    "result": result.output,
                    "agent_id": result.agent_id,
                    "coordination_id": result.coordination_id,
                }
                if result.error:
                    entry["error"] = result.error
            transcript.append(entry)
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": result_text[:MAX_RESULT_CHARS]}
            )
    raise AgentError(
        f"the model still called tools after {limit} turns (max_tool_iterations)", code="TOOL_LOOP_LIMIT"
    )


def offline_model(task: AgentTask) -> Model:
    """A deterministic model that plays the protocol: first turn, one call of every tool with arguments
    taken from the task's context where a property is named there (else a plain value of its type);
    next turn, an answer listing each call and its result."""

    def model(messages: list[dict[str, Any]], schemas: list[dict[str, Any]]) -> Reply:
        results = [m for m in messages if m.get("role") == "tool"]
        if not results:
            calls = tuple(
                ToolCall(f"call_{i}", s["function"]["name"], _arguments(s["function"]["parameters"], task))
                for i, s in enumerate(schemas)
            )
            return Reply(tool_calls=calls)
        asked = {c["id"]: c["function"] for m in messages for c in m.get("tool_calls") or ()}
        lines = [
            f"- {asked[r['tool_call_id']]['name']}({asked[r['tool_call_id']]['arguments']}) -> {r['content']}"
            for r in results
        ]
        return Reply(content="Tool results:\n" + "\n".join(lines))

    return model


def _arguments(schema: dict[str, Any], task: AgentTask) -> dict[str, Any]:
    plain = {"string": task.text, "number": 0, "integer": 0, "boolean": False, "array": [], "object": {}}
    out = {}
    for name, prop in sorted((schema.get("properties") or {}).items()):
        if name in task.context:
            out[name] = task.context[name]
        else:
            kind = prop.get("type") if isinstance(prop, dict) else None
            out[name] = plain.get(kind) if isinstance(kind, str) else None
    return out
