"""The built-in "complete-workflow" template behind ExecuteCompleteWorkflow, its per-call options, and the
`requirement.<execution id>` state keys it keeps up to date.

analyse (analysis) -> generate_tasks (planning, a JSON task list) -> execute_tasks (fan-out: each task to an
agent with its capability, in the tasks' own dependency order) -> review (review) -> summary (summary).
Prompts ask for JSON so OpenAI-compatible agents answer in a parseable shape; the offline agents answer
from the same context deterministically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from ...errors import InvalidArgument, VoltorchError
from ...storage import Tx
from ..coordination import CoordinationCondition
from ..state import StateStore
from ._executions import COMPLETED, StepRecord
from ._run import ExecutionRun
from .templates import (
    INTEGER,
    MAX_STEP_TIMEOUT,
    STRING,
    AgentTaskSpec,
    ApprovalSpec,
    Budget,
    ConditionSpec,
    FanOutSpec,
    ParameterSpec,
    Problems,
    RetryPolicy,
    StepSpec,
    Template,
    check_budget,
    check_retry,
    dumps,
    validate_template,
)

log = logging.getLogger("voltorch.workflows")

NAME = "complete-workflow"
MAX_REQUIREMENT = 20_000
MAX_TASKS = 50
STATE_PREFIX = "requirement."

_JSON_ONLY = "Answer with one JSON object only, no prose and no code fences."

ANALYSE = f"""You are a senior software analyst. Analyse the software requirement below.
{_JSON_ONLY} Shape:
{{"summary": "<2-3 sentences>", "requirements": [{{"id": "R1", "title": "...", "description": "...",
"kind": "core|functional|non-functional"}}], "components": ["..."], "risks": ["..."]}}

Requirement:
{{{{requirement}}}}"""

PLAN = f"""You are a technical lead. Break the requirement into at most {{{{max_tasks}}}} implementation
tasks, using the analysis in the context. Each task has a capability: "coding", "testing" or "documentation".
{_JSON_ONLY} Shape:
{{"tasks": [{{"id": "task-1", "title": "...", "description": "...", "capability": "coding",
"depends_on": []}}]}}
depends_on lists ids of earlier tasks that must be finished first.

Requirement:
{{{{requirement}}}}"""

EXECUTE = f"""Carry out this task of a larger project.
Task {{{{item.id}}}}: {{{{item.title}}}}
{{{{item.description}}}}

The project requirement and the outputs of the tasks this one depends on are in the context.
{_JSON_ONLY} Shape:
{{"task_id": "{{{{item.id}}}}", "deliverable": "<one line>", "files": [{{"path": "...", "content": "..."}}],
"notes": ["..."]}}"""

REVIEW = f"""You are a code reviewer. Review the deliverables in the context against the requirement and the
task list. {_JSON_ONLY} Shape:
{{"approved": true, "score": 0.0-1.0, "findings": [{{"severity": "major|minor|info", "task_id": "...",
"message": "..."}}]}}

Requirement:
{{{{requirement}}}}"""

SUMMARY = f"""Write the final report of this project for its stakeholders: what was asked, the plan, what
was delivered (files), the review verdict and open points. {_JSON_ONLY} Shape:
{{"summary": "<markdown>"}}

Requirement:
{{{{requirement}}}}"""


def template() -> Template:
    req = "{{requirement}}"
    return Template(
        name=NAME,
        description="Requirement to reviewed deliverables: analyse, plan tasks, run each task on an agent "
        "with its capability, review, summarise.",
        category="development",
        parameters=(
            ParameterSpec(
                "requirement",
                STRING,
                required=True,
                min=1,
                max=MAX_REQUIREMENT,
                description="What to build, in plain language",
            ),
            ParameterSpec(
                "max_tasks",
                INTEGER,
                default=8,
                has_default=True,
                min=1,
                max=MAX_TASKS,
                description="Most tasks the planning step may produce",
            ),
        ),
        steps=(
            StepSpec(
                "analyse",
                AgentTaskSpec(
                    ANALYSE, capabilities=("analysis",), context={"requirement": req}, json_output=True
                ),
                name="Analyse requirement",
            ),
            StepSpec(
                "generate_tasks",
                AgentTaskSpec(
                    PLAN,
                    capabilities=("planning",),
                    context={
                        "requirement": req,
                        "analysis": "{{steps.analyse.result}}",
                        "max_tasks": "{{max_tasks}}",
                    },
                    json_output=True,
                ),
                name="Generate tasks",
                depends_on=("analyse",),
            ),
            StepSpec(
                "execute_tasks",
                FanOutSpec(
                    items_from_step_id="generate_tasks",
                    items_path="tasks",
                    task=AgentTaskSpec(
                        EXECUTE,
                        capabilities=("{{item.capability}}",),
                        context={
                            "requirement": req,
                            "task": "{{item}}",
                            "analysis_summary": "{{steps.analyse.result.summary}}",
                        },
                        json_output=True,
                        fallback_to_any_agent=True,
                    ),
                    max_parallel=4,
                    max_items=MAX_TASKS,
                    truncate_items=True,
                    item_dependencies=True,
                ),
                name="Execute tasks",
                depends_on=("generate_tasks",),
            ),
            StepSpec(
                "review",
                AgentTaskSpec(
                    REVIEW,
                    capabilities=("review",),
                    context={
                        "requirement": req,
                        "tasks": "{{steps.generate_tasks.result.tasks}}",
                        "results": "{{steps.execute_tasks.result}}",
                    },
                    json_output=True,
                ),
                name="Review",
                depends_on=("execute_tasks",),
            ),
            StepSpec(
                "summary",
                AgentTaskSpec(
                    SUMMARY,
                    capabilities=("summary",),
                    context={
                        "requirement": req,
                        "analysis": "{{steps.analyse.result}}",
                        "plan": "{{steps.generate_tasks.result}}",
                        "results": "{{steps.execute_tasks.result}}",
                        "review": "{{steps.review.result}}",
                    },
                    json_output=True,
                ),
                name="Summary",
                depends_on=("review",),
            ),
        ),
        default_retry=RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=30.0),
        builtin=True,
    )


@dataclass(frozen=True)
class Options:
    max_tasks: int = 0
    max_parallel: int = 0
    skip_review: bool = False
    timeout: float | None = None
    step_timeout: float | None = None
    retry: RetryPolicy | None = None
    budget: Budget | None = None
    approve_tasks: bool = False


APPROVE_PROMPT = "Approve the generated task list (approve, reject, or edit the list) for: {{requirement}}"


def _approval_steps() -> tuple[StepSpec, StepSpec]:
    """approve_tasks (a person approves or edits the task list) and approved (the branch: fan out only
    when approved)."""
    approve = StepSpec(
        "approve_tasks",
        ApprovalSpec(prompt=APPROVE_PROMPT, data="{{steps.generate_tasks.result.tasks}}"),
        name="Approve tasks",
        depends_on=("generate_tasks",),
    )
    branch = StepSpec(
        "approved",
        ConditionSpec(
            "approve_tasks",
            CoordinationCondition(json_path="approved", json_value=True),
            then_steps=("execute_tasks",),
        ),
        name="Approved?",
        depends_on=("approve_tasks",),
    )
    return approve, branch


def variant(base: Template, requirement: str, opts: Options) -> tuple[Template, dict[str, Any]]:
    """The template as this call runs it, and its parameters. INVALID_ARGUMENT names the request field."""
    if not requirement.strip():
        raise InvalidArgument("requirement", "a requirement is required", reason="FIELD_REQUIRED")
    if len(requirement) > MAX_REQUIREMENT:
        raise InvalidArgument("requirement", f"at most {MAX_REQUIREMENT} characters (got {len(requirement)})")
    if opts.max_tasks < 0:
        raise InvalidArgument("options.max_tasks", "must not be negative")
    if opts.max_parallel < 0:
        raise InvalidArgument("options.max_parallel", "must not be negative")
    if opts.step_timeout is not None and opts.step_timeout > MAX_STEP_TIMEOUT:
        raise InvalidArgument(
            "options.step_timeout", f"at most {MAX_STEP_TIMEOUT:.0f} s (24 h)", reason="DURATION_INVALID"
        )
    if opts.retry is not None:
        problems = Problems("options.", reason="FIELD_INVALID")
        check_retry(problems, opts.retry, "retry")
        problems.raise_if_any()
    if opts.budget is not None:
        problems = Problems("options.", reason="FIELD_INVALID")
        check_budget(problems, opts.budget, "budget")
        problems.raise_if_any()
    max_tasks = min(opts.max_tasks or 8, MAX_TASKS)
    steps: list[StepSpec] = []
    for s in base.steps:
        if s.id == "review" and opts.skip_review:
            continue
        if s.id == "summary" and opts.skip_review:
            s = replace(s, depends_on=("execute_tasks",))
            assert isinstance(s.kind, AgentTaskSpec)
            ctx = {k: v for k, v in (s.kind.context or {}).items() if k != "review"}
            s = replace(s, kind=replace(s.kind, context=ctx))
        if isinstance(s.kind, FanOutSpec):
            fan_out = replace(s.kind, max_items=max_tasks, max_parallel=opts.max_parallel or 4)
            if opts.approve_tasks:  # fan out the approved (or edited) list, only when approved
                steps.extend(_approval_steps())
                fan_out = replace(fan_out, items_from_step_id="approve_tasks", items_path="data")
                s = replace(s, depends_on=("approved",))
            s = replace(s, kind=fan_out)
        if opts.step_timeout:
            s = replace(s, timeout=opts.step_timeout)
        steps.append(s)
    t = replace(
        base,
        steps=tuple(steps),
        timeout=opts.timeout or base.timeout,
        default_retry=opts.retry.over(base.default_retry) if opts.retry else base.default_retry,
        budget=opts.budget or base.budget,
    )
    return t, {"requirement": requirement, "max_tasks": max_tasks}


class Definitions:
    """Each per-call variant validated and serialised once per (built-in template, options), not per call:
    the variant depends on nothing else, and the bench's 200 starts spent ~9 % of the server's CPU on it."""

    SIZE = 64  # distinct options kept; a client that varies them on every call only refills the table

    def __init__(self) -> None:
        self._by_options: dict[Options, tuple[Template, str]] = {}

    def __len__(self) -> int:
        return len(self._by_options)

    def of(self, base: Template, opts: Options, t: Template) -> str:
        """t (the variant of base for opts) as stored; INVALID_ARGUMENT if it is not a valid template."""
        hit = self._by_options.get(opts)
        if hit is not None and hit[0] is base:  # the built-in re-registered: its variants made afresh
            return hit[1]
        validate_template(t)
        definition = dumps(t)
        if len(self._by_options) >= self.SIZE:
            self._by_options.clear()
        self._by_options[opts] = (base, definition)
        return definition


# -- requirement.<id> state keys ----------------------------------------------------------------------------


class RequirementState:
    """Mirrors a complete-workflow execution into global state, as the seed's orchestrator does:
    requirement.<id> (the record), requirement.<id>.analysis / .tasks / .results / .review / .summary.

    Each key is written in the transaction of the checkpoint that produces it (the start, a step's
    completion, the end): durable with it, its `state.changed` event after that checkpoint's events. The
    methods below say which keys (key, value) a checkpoint writes; `write_in` writes them."""

    def __init__(self, state: StateStore):
        self.state = state

    @staticmethod
    def key(execution_id: str, part: str = "") -> str:
        return f"{STATE_PREFIX}{execution_id}" + (f".{part}" if part else "")

    def write_in(self, tx: Tx, values: list[tuple[str, Any]]) -> None:
        """Write the keys in the checkpoint's transaction; one that cannot be written (e.g. too large) is
        left out, and the log says why: the workflow goes on."""
        self.state.set_in(tx, values, invalid=_not_written)

    def started(self, execution_id: str, requirement: str, status: str) -> list[tuple[str, Any]]:
        return [
            (
                self.key(execution_id),
                {
                    "requirement": requirement,
                    "execution_id": execution_id,
                    "status": status,
                    "update_time": time.time(),
                },
            )
        ]

    def step_completed(self, run: ExecutionRun, rec: StepRecord) -> list[tuple[str, Any]]:
        if run.template_name != NAME or rec.parent_id:
            return []
        value = rec.structured if rec.structured is not None else rec.output
        if rec.step_id == "analyse":
            return [(self.key(run.id, "analysis"), value)]
        if rec.step_id == "generate_tasks":
            tasks = value.get("tasks") if isinstance(value, dict) else value
            return [(self.key(run.id, "tasks"), tasks)]
        if rec.step_id == "execute_tasks":
            return [(self.key(run.id, "results"), self._results(run, rec))]
        if rec.step_id == "review":
            return [(self.key(run.id, "review"), value)]
        if rec.step_id == "summary":
            text = value.get("summary") if isinstance(value, dict) else None
            return [(self.key(run.id, "summary"), text if isinstance(text, str) else rec.output)]
        return []

    @staticmethod
    def _results(run: ExecutionRun, rec: StepRecord) -> list[dict[str, Any]]:
        """One line per task (file contents stay in the execution record)."""
        out = []
        for cid in run.children.get(rec.step_id, []):
            child = run.records[cid]
            v = child.structured if isinstance(child.structured, dict) else {}
            item = child.item if isinstance(child.item, dict) else {}
            files = listed if isinstance(listed := v.get("files"), list) else []
            out.append(
                {
                    "task_id": str(item.get("id", cid)),
                    "title": child.name,
                    "capability": item.get("capability", ""),
                    "agent_id": child.agent_id,
                    "deliverable": v.get("deliverable", child.output[:200]),
                    "files": [f.get("path") for f in files if isinstance(f, dict)],
                }
            )
        return out

    def finished(self, run: ExecutionRun) -> list[tuple[str, Any]]:
        """The record at the run's end (its status set); after a restart also the keys of its finished
        steps again (an execution started before its keys were written with its steps may lack some)."""
        if run.template_name != NAME:
            return []
        recs = run.records
        review = recs.get("review")
        rv = review.structured if review is not None and isinstance(review.structured, dict) else {}
        agents = sorted({r.agent_id for r in recs.values() if r.agent_id})
        record = {
            "requirement": run.params.get("requirement", ""),
            "execution_id": run.id,
            "status": run.status,
            "update_time": time.time(),
            "agents": agents,
            "tasks": [recs[c].name for c in run.children.get("execute_tasks", [])],
            "approved": rv.get("approved"),
            "score": rv.get("score"),
            "summary_key": self.key(run.id, "summary"),
        }
        if run.status != COMPLETED:
            failed = [r.error for r in recs.values() if r.error and r.status == "failed" and not r.parent_id]
            record["error"] = failed[0].to_dict() if failed else None
        out: list[tuple[str, Any]] = [(self.key(run.id), record)]
        if run.recovered:  # catch up on keys a crash may have missed
            for rec in recs.values():
                if rec.status == COMPLETED and not rec.parent_id:
                    out += self.step_completed(run, rec)
        return out


def _not_written(key: str, exc: VoltorchError) -> None:
    log.warning("could not write state key %s: %s", key, exc)
