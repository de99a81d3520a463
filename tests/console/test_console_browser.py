"""The console in a real browser (headless Chromium via Playwright) against a real server: start a
workflow and watch its DAG turn green step by step, open a step's output, pause and resume it, filter
the event tail, and find the controls refused to a reader. No page may log a console error."""

from __future__ import annotations

import re
import urllib.request

import voltorch
from console_kit import ADMIN, AGENT, READER, Http
from templates import APPROVAL
from voltorch import AgentTask, Step, WorkflowTemplate
from voltorch_server.app import VoltorchServer

STEP = '[data-step="{}"][data-s="{}"]'


def test_start_a_workflow_and_watch_pause_resume_it(console_server: VoltorchServer, gate_for, tab) -> None:
    with voltorch.Client(console_server.target) as client:
        gate = gate_for(client)
        t = tab(console_server)
        page = t.open("#/workflows")
        page.fill("#start-template", "gated-release")
        page.click("#start-template-button")
        page.wait_for_url(re.compile(r"#/workflows/wfx_"))
        eid = page.url.rsplit("/", 1)[-1]

        # Step by step: each node turns from running to completed (green) as its gate opens.
        page.wait_for_selector(STEP.format("fetch", "running"))
        page.wait_for_selector(STEP.format("build", "pending"), state="attached")
        t.shot("execution-running")
        gate.open("fetch")
        page.wait_for_selector(STEP.format("fetch", "completed"))
        page.wait_for_selector(STEP.format("build", "running"))
        page.wait_for_selector(STEP.format("lint", "running"))

        # Pause while build and lint are in flight: they finish, ship does not start.
        page.click("#pause")
        page.wait_for_selector('#exec-status[data-status="paused"]')
        assert page.is_enabled("#resume") and not page.is_enabled("#pause")
        gate.open("build", "lint")
        page.wait_for_selector(STEP.format("lint", "completed"))
        page.wait_for_selector(STEP.format("build", "completed"))
        assert client.workflows.get(eid).status == "paused"
        page.wait_for_selector(STEP.format("ship", "pending"), state="attached")

        page.click("#resume")
        page.wait_for_selector(STEP.format("ship", "running"))
        gate.open("ship")
        page.wait_for_selector(STEP.format("ship", "completed"))
        page.wait_for_selector('#exec-status[data-status="completed"]')
        assert page.is_disabled("#cancel")

        # Open a step's output: the JSON viewer, with its long text folded.
        page.click('[data-step="build"]')
        page.wait_for_selector(
            '#step-output:has-text("build done: build it") .json'
        )  # this step's, not the last
        assert "build done: build it" in page.inner_text("#step-output")
        assert page.locator("#step-output details.folded").count() == 1  # 40 log lines, folded
        assert "build it" in page.inner_text("#step-input")
        timeline = page.inner_text("#timeline")
        assert "workflow.execution.paused" in timeline and "workflow.execution.resumed" in timeline
        t.shot("execution")

        # The list shows it, with its live status.
        page.click("text=← Workflows")
        page.wait_for_selector(f'tr[data-id="{eid}"][data-status="completed"]')
        t.shot("workflows")


def test_an_approval_is_decided_in_the_console(console_server: VoltorchServer, tab) -> None:
    """A step waiting for approval shows as waiting, with its prompt and the data under review; Approve
    sends the decision (with the comment) and the run goes on; who decided is "console"."""
    with voltorch.Client(console_server.target) as client:
        client.workflows.register_template(APPROVAL)
        eid = client.workflows.start(APPROVAL.name).execution.id
        t = tab(console_server)
        page = t.open(f"#/workflows/{eid}")
        page.wait_for_selector(STEP.format("review", "waiting"))
        item = '[data-wait="review"][data-kind="approval"]'
        assert "Publish these notes?" in page.inner_text(item)
        assert client.workflows.get(eid).step("draft").output[:40] in page.inner_text(item)
        t.shot("execution-approval")
        page.fill(f"{item} textarea", "ship it")
        page.click(f'{item} [data-decision="approve"]')
        page.wait_for_selector('#exec-status[data-status="completed"]')
        page.wait_for_selector("#waiting", state="hidden")
        review = client.workflows.get(eid).step("review").structured_output
        assert (review["decision"], review["decided_by"], review["comment"]) == (
            "approved",
            "console",
            "ship it",
        )
        assert client.workflows.get(eid).step("announce").status == "completed"


def test_keyboard_selects_a_step(console_server: VoltorchServer, tab) -> None:
    with voltorch.Client(console_server.target) as client:
        e = client.workflows.execute_complete("Make a to-do list app").execution
        for _ in client.workflows.watch(e.id):
            pass
    t = tab(console_server)
    page = t.open(f"#/workflows/{e.id}")
    page.wait_for_selector(STEP.format("summary", "completed"))
    page.focus('[data-step="analyse"]')
    page.keyboard.press("Enter")
    page.wait_for_selector("#step-output .json")
    assert page.evaluate("document.activeElement.dataset.step") == "analyse"
    t.shot("execution-complete-workflow")
    chip = page.locator('.chip[data-step="execute_tasks[0]"]')
    chip.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#step-detail h3').textContent.length > 0")
    assert "execute_tasks[0]" in page.inner_text("#step-detail")


def test_event_tail_filters_pauses_and_shows_a_correlation(console_server: VoltorchServer, tab) -> None:
    t = tab(console_server)
    page = t.open("#/events")
    page.wait_for_selector("#tail-state:has-text('live')")
    page.fill("#f-types", "custom.*")
    page.fill("#f-source", "probe")
    page.click("#f-apply")
    page.wait_for_function("document.querySelector('#tail-state').textContent.includes('live')")
    with voltorch.Client(console_server.target) as client:
        first = client.events.publish("custom.ping", {"n": 1}, source="probe", correlation_id="corr-1")
        client.events.publish("other.pong", {"n": 2}, source="probe")
        client.events.publish("custom.ping", {"n": 3}, source="elsewhere")
        page.wait_for_selector('#tail tr[data-type="custom.ping"]')
        assert page.locator("#tail tr").count() == 1

        page.click("#tail-pause")
        client.events.publish(
            "custom.reply", {"n": 4}, source="probe", correlation_id="corr-1", causation_id=first.id
        )
        page.wait_for_selector("#tail-state:has-text('1 new')")
        assert page.locator('#tail tr[data-type="custom.reply"]').count() == 0  # held, not dropped
        page.click("#tail-pause")
        page.wait_for_selector('#tail tr[data-type="custom.reply"]')
        t.shot("events")

    page.click('#tail tr[data-type="custom.reply"] a')
    page.wait_for_selector("#correlation-tree li[data-event] ul.tree li[data-event]")
    assert page.locator("#correlation-tree li").count() == 2
    t.shot("correlation")


def test_agents_and_system_pages(console_server: VoltorchServer, tab) -> None:
    with voltorch.Client(console_server.target) as client:
        e = client.workflows.execute_complete("Summarise a text").execution
        for _ in client.workflows.watch(e.id):
            pass
    console_server.runtime.watcher.collect_metrics()
    t = tab(console_server)
    page = t.open("#/agents")
    page.wait_for_selector('tr[data-agent="analyst"]')
    assert "offline" in page.inner_text('tr[data-agent="analyst"]')
    t.shot("agents")
    # A recorded failure of that run: the System page lists it and links to the run's trace story.
    console_server.runtime.errors.record("workflows", "STEP_FAILED", "disk full", correlation_id=e.id)
    page = t.open("#/system")
    page.wait_for_selector('tr[data-component="workflows"] .badge[data-s="healthy"]')
    page.wait_for_selector("#rpc-charts svg path.line", state="attached")
    page.wait_for_selector("#llm-endpoints:has-text('No LLM endpoint called yet.')")  # offline agents
    page.wait_for_selector("#errors tr:has-text('disk full')")
    t.shot("system")
    page.click("#errors a:has-text('trace story')")
    page.wait_for_selector("#story li.error:has-text('disk full')")
    story = page.inner_text("#story")
    assert "workflow.execution.started" in story and "workflow.execution.completed" in story
    t.shot("trace-story")


def test_phone_width_has_no_horizontal_page_scroll(console_server: VoltorchServer, tab) -> None:
    with voltorch.Client(console_server.target) as client:
        e = client.workflows.execute_complete("Sort a list").execution
    t = tab(console_server, width=390, height=844)
    pages = {
        "#/workflows": "tbody tr[data-id]",
        f"#/workflows/{e.id}": "#dag svg",
        "#/agents": "tr[data-agent]",
        "#/events": "#tail tr[data-seq]",
        "#/system": "tr[data-component]",
    }
    for where, drawn in pages.items():
        page = t.open(where)
        page.wait_for_selector(drawn)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), where
        t.shot("phone-" + where.split("/")[1] + ("-execution" if e.id in where else ""))


def test_reader_logs_in_and_the_cancel_button_is_refused(
    secured_server: VoltorchServer, gate_for, tab
) -> None:
    with voltorch.Client(secured_server.target, token=ADMIN) as client:
        gate_for(client)
        e = client.workflows.start("gated-release").execution
    t = tab(secured_server)
    page = t.open(f"#/workflows/{e.id}")
    page.wait_for_selector("text=Sign in")
    page.fill("#token", READER)
    page.click("#login-button")
    page.wait_for_selector("#role:has-text('reader')")
    page.wait_for_selector(STEP.format("fetch", "running"))
    assert page.is_disabled("#cancel") and page.is_disabled("#pause")
    assert "may not control" in (page.get_attribute("#cancel", "title") or "")
    t.shot("reader")
    # The server refuses it too (not only the button), with the reader's token; an agent may.
    assert secured_server.console is not None
    http = Http(secured_server.console.url)
    assert http.post(f"/api/executions/{e.id}/cancel", token=READER).status == 403
    assert http.post(f"/api/executions/{e.id}/cancel", token=AGENT).status == 200
    page.wait_for_selector('#exec-status[data-status="cancelled"]')
    # The token lives in this tab's session storage only.
    assert page.evaluate("sessionStorage.getItem('voltorch.token')") == READER
    assert urllib.request.urlopen(secured_server.console.url + "app.js", timeout=10).status == 200


def test_the_template_filter_lists_every_template(console_server: VoltorchServer, tab) -> None:
    """The filter took the first page of templates only: one that ends early (large templates) hid the rest."""
    with voltorch.Client(console_server.target) as client:
        steps = [Step(f"s{j}", AgentTask("analyst", "y" * 90_000)) for j in range(10)]
        for i in range(3):
            client.workflows.register_template(WorkflowTemplate(name=f"big{i}", steps=steps))
        client.workflows.register_template(
            WorkflowTemplate(name="zz-small", steps=[Step("s", AgentTask("analyst", "t"))])
        )
    page = tab(console_server).open("#/workflows")
    page.wait_for_selector('#f-template option[value="zz-small"]', state="attached")
    assert page.locator('#f-template option[value="big0"]').count() == 1


def test_the_agents_page_lists_every_agent(console_server: VoltorchServer, tab) -> None:
    """The page showed the first page of agents only: one that ends early (agents with many labels) hid the
    rest."""
    labels = {f"l{j}": "v" * 1024 for j in range(64)}
    with voltorch.Client(console_server.target) as client:
        for i in range(30):
            client.coordination.register_agent(f"labelled-{i:02}", kind="offline", labels=labels)
        client.coordination.register_agent("zz-last", kind="offline")
    page = tab(console_server).open("#/agents")
    page.wait_for_selector('tr[data-agent="zz-last"]')
    assert page.locator('tr[data-agent^="labelled-"]').count() == 30
