"""Human approval in a workflow: an agent drafts release notes, a person approves, rejects or edits them,
and only approved notes are published.

    python examples/approval.py --target 127.0.0.1:50051 [--decision approve|reject|edit] [--by alice]

Without --decision it asks on the terminal. The run waits on the server (no thread, no slot held), so the
decision could as well come later, from another process: `voltorch workflows approve <execution id>`.
"""

from __future__ import annotations

import argparse
import json

import voltorch
from voltorch import AgentTask, ApprovalStep, Condition, ConditionStep, Step, WorkflowTemplate

TEMPLATE = WorkflowTemplate(
    name="release-approval",
    description="Draft release notes, ask a person, publish only what was approved",
    steps=[
        Step("draft", AgentTask("Draft release notes for version 2.0", capabilities=["documentation"])),
        Step(
            "review",
            ApprovalStep(prompt="Publish these release notes?", data="{{steps.draft.output}}", timeout=3600),
            depends_on=["draft"],
        ),
        Step(
            "approved",
            ConditionStep("review", Condition.field_equals("approved", True), then_steps=["publish"]),
            depends_on=["review"],
        ),
        Step("publish", AgentTask("Publish: {{steps.review.result.data}}", capabilities=["documentation"])),
    ],
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--token", default="")
    parser.add_argument("--decision", choices=["approve", "reject", "edit"], help="default: ask")
    parser.add_argument("--by", default="", help="who decides (default: the token's role)")
    args = parser.parse_args()

    with voltorch.Client(args.target, token=args.token or None, timeout=30) as client:
        client.workflows.register_template(TEMPLATE)
        run = client.workflows.start("release-approval").execution
        print(f"execution {run.id} started")
        for update in client.workflows.watch(run.id):  # follow it until the approval waits
            if update.type == "workflow.step.waiting":
                break
        (waiting,) = client.workflows.get(run.id).waiting
        print(f"waiting for {waiting.kind} on step {waiting.step_id!r}: {waiting.prompt}")
        print(f"--- data under review ---\n{waiting.data}\n---")
        decision = args.decision or input("approve, reject or edit? ").strip().lower()
        if decision == "edit":
            client.workflows.edit(
                run.id, "Version 2.0: faster, smaller, kinder.", by=args.by, comment="shorter"
            )
        elif decision == "reject":
            client.workflows.reject(run.id, by=args.by, comment="not yet")
        else:
            client.workflows.approve(run.id, by=args.by, comment="ship it")
        done = client.workflows.wait(run.id, timeout=60)
        review = done.step("review").structured_output
        print(f"decision: {review['decision']} by {review['decided_by']}")
        print(f"publish: {done.step('publish').status}")
        print(json.dumps({"status": done.status, "approved": review["approved"]}))
        return 0 if done.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
