"""Workflow templates more than one test folder runs (imported by bare name, as `polling` is)."""

from __future__ import annotations

from voltorch import AgentTask, ApprovalStep, Condition, ConditionStep, Step, WaitStep, WorkflowTemplate

# A draft reviewed by a person: announced only when approved (the condition skips it otherwise).
APPROVAL = WorkflowTemplate(
    name="publish",
    steps=[
        Step("draft", AgentTask("Draft release notes for v2", ["documentation"])),
        Step(
            "review",
            ApprovalStep(prompt="Publish these notes?", data="{{steps.draft.output}}"),
            depends_on=["draft"],
        ),
        Step(
            "publish",
            ConditionStep("review", Condition.field_equals("approved", True), ["announce"]),
            depends_on=["review"],
        ),
        Step("announce", AgentTask("Announce: {{steps.review.result.data}}", ["documentation"])),
    ],
)

# Two steps of the echo agent (conftest's `echo_agent`) around a wait for the signal "go", so the test
# decides when the execution ends.
HELD = WorkflowTemplate(
    name="held",
    steps=[
        Step("a", AgentTask("first", ["echo"])),
        Step("w", WaitStep("go"), depends_on=["a"]),
        Step("b", AgentTask("last", ["echo"]), depends_on=["w"]),
    ],
)
