"""Live token streams: print an agent's text as it is written.

    python examples/streaming.py [host:port]     # a running server (`make serve`), 127.0.0.1:50051 by default

The built-in writer answers offline (or through an OpenAI-compatible model when the server has a key); either
way its text arrives as `agent.output.delta` events, batched by the server, while the step runs. The final
output is the step's output, as always.
"""

from __future__ import annotations

import sys

import voltorch

TEMPLATE = voltorch.WorkflowTemplate(
    name="streaming-example",
    steps=[
        voltorch.Step(
            "write",
            voltorch.AgentTask("Write a short guide to {{topic}}", capabilities=["documentation"]),
        )
    ],
    parameters=[voltorch.ParameterSpec("topic", type="string", default="durable workflows")],
)


def main(target: str) -> int:
    with voltorch.Client(target) as client:
        client.workflows.register_template(TEMPLATE)
        run = client.workflows.start("streaming-example", parameters={"topic": "live token streams"})
        streamed = []
        for update in client.workflows.watch(run.execution.id, deltas=True, timeout=60):
            if update.delta:  # the text as it grows
                print(update.delta, end="", flush=True)
                streamed.append(update.delta)
        execution = client.workflows.get(run.execution.id)
        print(f"\n-- {execution.status}: {len(''.join(streamed))} characters streamed")
        return (
            0
            if execution.status == "completed" and "".join(streamed) == execution.step("write").output
            else 1
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
