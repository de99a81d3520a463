"""Tool-calling agents: an LLM agent calls functions other agents offer, each call a child coordination.

    python examples/tools.py [host:port]     # a running server (`make serve`), 127.0.0.1:50051 by default

A remote worker offers `add` (described by a JSON schema when it connects); an LLM agent is given that tool.
The agent runs OpenAI's function-calling loop: the model asks for `add`, the server runs the call on the
worker as a child coordination, feeds the result back, and the model answers. Without an API key in the
server's environment the agent plays the same protocol offline, deterministically (it calls each tool
once with arguments from the step's context), so this example needs no network.
"""

from __future__ import annotations

import sys

import voltorch

ADD = voltorch.ToolSpec(
    "add",
    "Add two numbers",
    {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]},
)


def add(task: voltorch.WorkerTask) -> str:
    args = task.context["arguments"]
    return str(args["a"] + args["b"])


def main(target: str) -> int:
    with voltorch.Client(target) as client, voltorch.Worker(client, "calculator", ["math"], add, tools=[ADD]) as w:
        w.connected.wait(10)
        client.coordination.register_agent(
            "assistant",
            kind="llm",
            capabilities=["assistant"],
            llm=voltorch.LlmSettings(tools=["add"], api_key_env="VOLTORCH_EXAMPLE_KEY"),  # unset: offline
            replace=True,
        )
        client.workflows.register_template(
            voltorch.WorkflowTemplate(
                name="tools-example",
                steps=[
                    voltorch.Step(
                        "sum", voltorch.AgentTask("What is a + b?", agent_id="assistant", context={"a": 2, "b": 40})
                    )
                ],
            )
        )
        run = client.workflows.start("tools-example")
        for update in client.workflows.watch(run.execution.id, timeout=60):
            if update.type == "agent.tool.called":
                print(f"tool call: {update.data['tool']}({update.data['arguments']}) on {update.data['agent_id']}")
        step = client.workflows.get(run.execution.id).step("sum")
        print(step.output)
        for entry in step.structured_output["transcript"]:
            print(f"  {entry['tool']} -> {entry['result']} (coordination {entry['coordination_id']})")
        return 0 if step.status == "completed" and "-> 42" in step.output else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
