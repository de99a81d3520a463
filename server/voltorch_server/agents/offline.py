"""The offline agent: deterministic, no network — the default when no API key is configured, so the
whole system (ExecuteCompleteWorkflow included) runs end to end on a fresh machine.

Its output depends only on the capability asked for, the task text and the context: the same input
always gives the same output. Every output says where it came from: structured outputs carry
"generated_by" and the text output's first line names the offline agent.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..json_encoders import indented
from . import _offline_code as code
from ._offline_text import analyze, slug, title, untitle
from .base import OFFLINE_LABEL, Agent, AgentOutput, AgentTask, CancelSignal

ANALYSIS = ("analysis", "requirements", "analyze", "requirement_analysis")
PLANNING = ("planning", "plan", "task_generation", "decomposition")
DELIVERY = {
    "coding": "coding",
    "implementation": "coding",
    "code": "coding",
    "testing": "testing",
    "test": "testing",
    "qa": "testing",
    "documentation": "documentation",
    "docs": "documentation",
    "writing": "documentation",
}
REVIEW = ("review", "code_review")
SUMMARY = ("summary", "summarize", "summarization", "reporting")
KNOWN = (*ANALYSIS, *PLANNING, *DELIVERY, *REVIEW, *SUMMARY)
_TASK_CAPS = ("coding", "testing", "documentation")


def _find(obj: Any, key: str, depth: int = 6) -> dict[str, Any] | None:
    """The first dict (depth-first, in order) that has `key`; JSON strings are looked into too."""
    if depth < 0:
        return None
    if isinstance(obj, str) and obj[:1] in "{[":
        try:
            obj = json.loads(obj)
        except ValueError:
            return None
    if isinstance(obj, dict):
        if key in obj:
            return obj
        items = list(obj.values())
    elif isinstance(obj, list):
        items = obj
    else:
        return None
    for v in items:
        found = _find(v, key, depth - 1)
        if found is not None:
            return found
    return None


def _find_all(obj: Any, key: str, out: list[dict[str, Any]], depth: int = 6) -> list[dict[str, Any]]:
    if depth < 0:
        return out
    if isinstance(obj, str) and obj[:1] in "{[":
        try:
            obj = json.loads(obj)
        except ValueError:
            return out
    if isinstance(obj, dict):
        if key in obj and obj not in out:
            out.append(obj)
            return out
        for v in obj.values():
            _find_all(v, key, out, depth - 1)
    elif isinstance(obj, list):
        for v in obj:
            _find_all(v, key, out, depth - 1)
    return out


def choose_capability(requested: tuple[str, ...], own: tuple[str, ...], context: dict[str, Any]) -> str:
    """The capability the output is shaped for: requested first, then the context's, then the agent's."""
    hint = context.get("capability")
    for cap in (*requested, *([hint] if isinstance(hint, str) else []), *own):
        if cap and cap.lower() in KNOWN:
            return cap.lower()
    return ""


def _max_tasks(context: dict[str, Any]) -> int:
    """The context's max_tasks (the complete workflow passes it), 0 when there is none."""
    raw = context.get("max_tasks")
    try:
        n = int(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else 0
    except ValueError:
        return 0
    return max(n, 0)


def plan(text: str, context: dict[str, Any]) -> dict[str, Any]:
    """3-8 tasks (coding per requirement, then testing and documentation) from the analysis in the
    context, or from the text when there is none; never more than the context's max_tasks (coding
    tasks give way first, then documentation, then testing)."""
    limit = _max_tasks(context)
    analysis = _find(context, "requirements") or analyze(_requirement_text(text, context))
    reqs = [r for r in analysis.get("requirements", []) if isinstance(r, dict | str)]
    functional = [
        r for r in reqs if not isinstance(r, dict) or r.get("kind", "functional") in ("core", "functional")
    ] or reqs
    coding = min(6, max(1, limit - 2)) if limit else 6
    functional = functional[:coding] or [{"title": title(text.strip()[:80] or "the task")}]
    tasks: list[dict[str, Any]] = []
    core_id = ""
    for r in functional:
        r_title = r.get("title", "") if isinstance(r, dict) else str(r)
        tid = f"task-{len(tasks) + 1}"
        deps = [core_id] if core_id else []
        tasks.append(
            {
                "id": tid,
                "title": f"Implement {untitle(r_title)}",
                "description": r.get("description", r_title) if isinstance(r, dict) else r_title,
                "capability": "coding",
                "depends_on": deps,
                "requirement_ids": [r["id"]] if isinstance(r, dict) and "id" in r else [],
            }
        )
        if isinstance(r, dict) and r.get("kind") == "core" and not core_id:
            core_id = tid
    coding_ids = [t["id"] for t in tasks]
    subject = analysis.get("subject") or _requirement_text(text, context)[:60]
    if not limit or len(tasks) < limit:
        tasks.append(
            {
                "id": f"task-{len(tasks) + 1}",
                "title": f"Write tests for the {subject}",
                "description": "Unit tests for every implemented feature, success and failure paths.",
                "capability": "testing",
                "depends_on": coding_ids,
                "requirement_ids": [],
            }
        )
    if not limit or len(tasks) < limit:
        tasks.append(
            {
                "id": f"task-{len(tasks) + 1}",
                "title": f"Document the {subject}",
                "description": "A usage guide: overview, components, how to run and test.",
                "capability": "documentation",
                "depends_on": coding_ids,
                "requirement_ids": [],
            }
        )
    return {"summary": f"{len(tasks)} tasks for the {subject}", "tasks": tasks}


def _requirement_text(text: str, context: dict[str, Any]) -> str:
    req = context.get("requirement")
    return req if isinstance(req, str) and req.strip() else text


def _task_info(text: str, context: dict[str, Any]) -> dict[str, Any]:
    for key in ("task", "item"):
        t = context.get(key)
        if isinstance(t, dict) and ("title" in t or "id" in t):
            return t
    first = text.strip().splitlines()[0] if text.strip() else "task"
    return {
        "id": "task-" + hashlib.sha1(text.encode()).hexdigest()[:8],
        "title": first[:100],
        "description": text,
    }


def deliver(kind: str, text: str, context: dict[str, Any]) -> dict[str, Any]:
    info = _task_info(text, context)
    t_title = str(info.get("title") or info.get("id") or "task")
    desc = str(info.get("description") or text)
    if kind == "coding":
        files = code.coding_files(t_title, desc)
        deliverable = f"Implementation sketch for: {t_title}"
        notes = [f"{f['path']}: {len(f['content'].splitlines())} lines of Python" for f in files] + [
            "A sketch to refine: no I/O layer, in-memory storage only."
        ]
    elif kind == "testing":
        files = code.testing_files(t_title, desc, json.dumps(context, sort_keys=True, default=str)[:4000])
        deliverable = f"Test suite for: {t_title}"
        notes = [f"{f['path']}: {f['content'].count('def test_')} pytest tests" for f in files]
    else:
        files = code.documentation_files(t_title, desc, _find(context, "requirements"))
        deliverable = f"Documentation for: {t_title}"
        notes = [f"{f['path']}: markdown usage guide" for f in files]
    return {
        "task_id": str(info.get("id") or slug(t_title, "-")),
        "title": t_title,
        "deliverable": deliverable,
        "files": files,
        "notes": notes,
    }


def review(text: str, context: dict[str, Any]) -> dict[str, Any]:
    deliverables = _find_all(context, "deliverable", [])
    findings: list[dict[str, Any]] = []
    major = minor = 0
    if not deliverables:
        major += 1
        findings.append(
            {"severity": "major", "task_id": "", "message": "no deliverables found in the context to review"}
        )
    for d in deliverables:
        tid = str(d.get("task_id", ""))
        files = d.get("files") or []
        if not files:
            major += 1
            findings.append({"severity": "major", "task_id": tid, "message": "no files delivered"})
            continue
        for f in files:
            content = str(f.get("content", "")) if isinstance(f, dict) else ""
            path = f.get("path", "?") if isinstance(f, dict) else "?"
            if not content.strip():
                major += 1
                findings.append({"severity": "major", "task_id": tid, "message": f"{path} is empty"})
            elif "TODO" in content or "NotImplementedError" in content:
                minor += 1
                findings.append(
                    {"severity": "minor", "task_id": tid, "message": f"{path} has unfinished parts"}
                )
    has_tests = any(
        str(f.get("path", "")).startswith("tests/")
        for d in deliverables
        for f in d.get("files") or []
        if isinstance(f, dict)
    )
    if deliverables and not has_tests:
        minor += 1
        findings.append(
            {"severity": "minor", "task_id": "", "message": "no test files among the deliverables"}
        )
    findings.append(
        {
            "severity": "info",
            "task_id": "",
            "message": f"offline review of {len(deliverables)} deliverables: structure and completeness only, "
            "not correctness",
        }
    )
    score = round(max(0.0, min(1.0, 1.0 - 0.25 * major - 0.05 * minor)), 2) if deliverables else 0.0
    return {"approved": major == 0 and score >= 0.7, "score": score, "findings": findings}


def summarize(text: str, context: dict[str, Any]) -> dict[str, Any]:
    lines = ["# Summary", "", f"**Requirement:** {_requirement_text(text, context).strip()[:500]}", ""]
    analysis = _find(context, "requirements")
    if analysis and analysis.get("summary"):
        lines += ["## Analysis", "", str(analysis["summary"]), ""]
    plan_ = _find(context, "tasks")
    if plan_ and isinstance(plan_.get("tasks"), list):
        lines += ["## Tasks", ""]
        lines += [
            f"- `{t.get('id', '')}` {t.get('title', '')} ({t.get('capability', '')})"
            for t in plan_["tasks"]
            if isinstance(t, dict)
        ]
        lines.append("")
    deliverables = _find_all(context, "deliverable", [])
    if deliverables:
        lines += ["## Deliverables", ""]
        for d in deliverables:
            paths = ", ".join(f"`{f.get('path')}`" for f in d.get("files") or [] if isinstance(f, dict))
            lines.append(f"- {d.get('deliverable', '')}" + (f": {paths}" if paths else ""))
        lines.append("")
    rev = _find(context, "approved")
    if rev:
        verdict = "approved" if rev.get("approved") else "changes requested"
        lines += ["## Review", "", f"{verdict} (score {rev.get('score', '?')})", ""]
        lines += [
            f"- {f.get('severity')}: {f.get('message')}"
            for f in rev.get("findings", [])
            if isinstance(f, dict)
        ]
        lines.append("")
    lines.append(f"_Generated by the {OFFLINE_LABEL}._")
    return {"summary": "\n".join(lines)}


def generate(capability: str, text: str, context: dict[str, Any]) -> dict[str, Any]:
    """The structured output for one task (without the generated_by label)."""
    if capability in ANALYSIS:
        return analyze(_requirement_text(text, context))
    if capability in PLANNING:
        return plan(text, context)
    if capability in DELIVERY:
        return deliver(DELIVERY[capability], text, context)
    if capability in REVIEW:
        return review(text, context)
    if capability in SUMMARY:
        return summarize(text, context)
    return {
        "summary": f"Acknowledged: {text.strip()[:200]}",
        "notes": [
            "The offline agent shapes its output by capability (analysis, planning, coding, testing, "
            "documentation, review, summary); none was requested, so this is an acknowledgement only."
        ],
    }


def offline_output(task: AgentTask, note: str = "") -> AgentOutput:
    cap = choose_capability(task.capabilities, task.agent_capabilities, task.context)
    body = generate(cap, task.text, task.context)
    structured = {"generated_by": OFFLINE_LABEL, "capability": cap or "general", **body}
    if note:
        structured["note"] = note
    rendered = body["summary"] if cap in SUMMARY else indented(structured)  # json.dumps(..., indent=2)
    header = f"[{OFFLINE_LABEL}]" + (f" {note}" if note else "")
    return AgentOutput(f"{header}\n{rendered}", structured)


def streamed(task: AgentTask, out: AgentOutput) -> AgentOutput:
    """Hand the output to the task's live text, then return it: the whole text at once, as the last piece
    (the agent has it all at once: a write per line only cost each one a pass through the stream's lock,
    and an inline step's live text is one event either way)."""
    task.delta(out.output, last=True)
    return out


class OfflineAgent(Agent):
    kind = "offline"

    def run(self, task: AgentTask, cancel: CancelSignal) -> AgentOutput:
        return streamed(task, offline_output(task))
