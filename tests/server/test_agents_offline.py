"""The offline agent: deterministic, labelled, and structured enough to carry the pipeline end to end."""

from __future__ import annotations

import ast

import pytest
from voltorch_server.agents.base import OFFLINE_LABEL, AgentTask, CancelSignal
from voltorch_server.agents.offline import OfflineAgent

REQUIREMENT = "Create a simple user authentication system with login and registration functionality"


def run(capability: str, text: str = REQUIREMENT, context: dict | None = None, own: tuple[str, ...] = ()):
    t = AgentTask(
        "t:0", "t", text, context or {}, (capability,) if capability else (), agent_capabilities=own
    )
    return OfflineAgent().run(t, CancelSignal())


def test_every_output_is_labelled():
    for cap in ("analysis", "planning", "coding", "testing", "documentation", "review", "summary", ""):
        out = run(cap)
        assert out.output.splitlines()[0] == f"[{OFFLINE_LABEL}]"
        assert out.structured_output["generated_by"] == OFFLINE_LABEL


def test_analysis_splits_the_requirement_into_features():
    s = run("analysis").structured_output
    titles = [r["title"].lower() for r in s["requirements"]]
    assert "login" in titles and "registration" in titles
    assert any("user storage" in t for t in titles)
    assert all({"id", "title", "description", "priority"} <= set(r) for r in s["requirements"])
    assert {c["name"] for c in s["components"]} >= {"user_store", "login_service", "registration_service"}
    assert any("password" in r["risk"].lower() for r in s["risks"])
    assert "login and registration" in s["summary"]
    same_family = run("requirements").structured_output
    assert {**same_family, "capability": "analysis"} == s  # the same capability family, the same answer


@pytest.mark.parametrize(
    "text",
    [
        REQUIREMENT,
        "Build a REST API for a todo list with create, update, delete and search",
        "Implement a blog platform",
        "Write a CLI tool that converts CSV files to JSON and validates the schema",
        "x",
    ],
)
def test_planning_gives_3_to_8_tasks_with_known_capabilities_and_valid_dependencies(text):
    analysis = run("analysis", text).structured_output
    plan = run("planning", "Plan the work", {"analysis": analysis}).structured_output
    tasks = plan["tasks"]
    assert 3 <= len(tasks) <= 8
    ids = [t["id"] for t in tasks]
    assert ids == [f"task-{i}" for i in range(1, len(tasks) + 1)]
    assert {t["capability"] for t in tasks} <= {"coding", "testing", "documentation"}
    assert {"testing", "documentation"} <= {t["capability"] for t in tasks}
    for i, t in enumerate(tasks):
        assert set(t["depends_on"]) <= set(ids[:i])  # only earlier tasks: a DAG
        assert t["title"] and t["description"]
    # from the text alone (no analysis in the context) it plans the same way
    assert run("planning", text).structured_output["tasks"] == tasks


@pytest.mark.parametrize("max_tasks", [1, 2, 3, 4, 5, 8, 50, "3"])
def test_planning_never_gives_more_tasks_than_max_tasks(max_tasks):
    text = "Build a REST API for a todo list with create, update, delete, search and export"
    tasks = run("planning", text, {"max_tasks": max_tasks}).structured_output["tasks"]
    limit = int(max_tasks)
    assert 1 <= len(tasks) <= limit
    assert len(tasks) == min(limit, len(run("planning", text).structured_output["tasks"]))
    ids = [t["id"] for t in tasks]
    assert tasks[0]["capability"] == "coding"
    for i, t in enumerate(tasks):
        assert set(t["depends_on"]) <= set(ids[:i])
    if limit >= 3:
        assert {"testing", "documentation"} <= {t["capability"] for t in tasks}


def test_deliverables_have_real_content():
    plan = run("planning", REQUIREMENT).structured_output
    by_cap: dict[str, list[dict]] = {}
    for t in plan["tasks"]:
        d = run(t["capability"], t["title"], {"task": t}).structured_output
        assert d["task_id"] == t["id"] and d["deliverable"] and d["notes"] and d["files"]
        by_cap.setdefault(t["capability"], []).append(d)
    for d in by_cap["coding"]:
        for f in d["files"]:
            ast.parse(f["content"])  # a real Python sketch
    assert any("def login" in f["content"] for d in by_cap["coding"] for f in d["files"])
    assert any("pbkdf2_hmac" in f["content"] for d in by_cap["coding"] for f in d["files"])
    (tests,) = by_cap["testing"]
    assert "def test_" in tests["files"][0]["content"]
    (docs,) = by_cap["documentation"]
    assert docs["files"][0]["content"].startswith("# ")


def test_review_and_summary_read_the_context():
    plan = run("planning", REQUIREMENT).structured_output
    results = [run(t["capability"], t["title"], {"task": t}).structured_output for t in plan["tasks"]]
    review = run("review", "Review the work", {"results": results}).structured_output
    assert review["approved"] is True and 0.7 <= review["score"] <= 1
    assert isinstance(review["findings"], list)
    empty = run("review", "Review the work", {}).structured_output
    assert empty["approved"] is False and empty["score"] < 0.7
    summary = run(
        "summary",
        "Summarise",
        {"requirement": REQUIREMENT, "plan": plan, "results": results, "review": review},
    )
    md = summary.structured_output["summary"]
    assert md.startswith("# Summary") and "task-1" in md and "approved" in md and "src/login.py" in md
    assert summary.output.splitlines()[1] == "# Summary"


def test_capability_comes_from_the_request_then_the_agent():
    assert run("", own=("planning",)).structured_output["capability"] == "planning"
    assert run("coding", own=("planning",)).structured_output["capability"] == "coding"
    assert run("", own=("translation",)).structured_output["capability"] == "general"


def test_deterministic():
    for cap in ("analysis", "planning", "coding", "review", "summary"):
        assert run(cap).output == run(cap).output
        assert run(cap).structured_output == run(cap).structured_output


def test_planned_titles_keep_the_requirements_acronyms():
    """Issue 9 item 18: "Implement CLI calculator core", not "Implement cLI calculator core"."""
    analysis = run("analysis", "Build a CLI calculator with history").structured_output
    titles = [
        t["title"]
        for t in run("planning", "Plan the work", {"analysis": analysis}).structured_output["tasks"]
    ]
    assert "Implement CLI calculator core" in titles
    assert "Implement history" in titles  # an ordinary word still reads mid-sentence


def test_a_requirement_that_names_its_core_plans_it_once():
    """ "Implement CLI calculator core" plans "Implement CLI calculator core", not "... core core" and not
    the same coding task twice."""
    tasks = run("planning", "Implement CLI calculator core").structured_output["tasks"]
    titles = [t["title"] for t in tasks]
    assert titles[0] == "Implement CLI calculator core", titles
    assert not any("core core" in t for t in titles), titles
    assert len(titles) == len(set(titles)) >= 3, titles
    analysis = run("analysis", "Implement CLI calculator core").structured_output
    assert not any("core_core" in c["name"] for c in analysis["components"]), analysis["components"]


def test_the_live_text_is_the_output_given_once_as_the_last_piece():
    """The offline agent has its whole answer at once: it gives it to the live text in one piece, marked
    as the last (written with the outcome), and the text is the output's."""
    live: list[str] = []
    last: list[str] = []
    t = AgentTask("t:0", "t", REQUIREMENT, {}, ("planning",), on_delta=live.append, on_last_delta=last.append)
    out = OfflineAgent().run(t, CancelSignal())
    assert live == [] and last == [out.output]
    # without a listener for the last piece, the live text gets it
    t = AgentTask("t:0", "t", REQUIREMENT, {}, ("planning",), on_delta=live.append)
    assert OfflineAgent().run(t, CancelSignal()).output == "".join(live)
