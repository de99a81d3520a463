// One execution: its step DAG (live), the selected step's detail, the event timeline, and controls.
import { get, post, stream } from "../api.js";
import { drawDag } from "../dag.js";
import { badge, clock, coalesce, duration, folded, h, jsonView, notice, timeEl } from "../ui.js";

const ACTIVE = new Set(["pending", "queued", "running"]);
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);

export function mount(main, { params, session }) {
  const id = params[0];
  const view = { execution: null, graph: [], selected: null, coordinations: new Map() };
  const title = h("h1", {}, "Execution ", h("span", { class: "mono" }, id));
  const status = h("span", { id: "exec-status" });
  const meta = h("dl", { class: "kv inline" });
  const result = h("div", { id: "exec-result" });
  const waiting = h("div", { class: "panel", id: "waiting", hidden: true });
  const why = session.canControl ? undefined : `your role (${session.role}) may not control workflows`;
  const pauseBtn = h("button", { type: "button", id: "pause", onclick: () => act("pause") }, "Pause");
  const resumeBtn = h("button", { type: "button", id: "resume", onclick: () => act("resume") }, "Resume");
  const cancelBtn = h("button", { type: "button", id: "cancel", class: "danger", onclick: () => act("cancel") }, "Cancel");
  const dag = h("div", { class: "dag", id: "dag" });
  const detail = h("div", { id: "step-detail" }, h("p", { class: "muted" }, "Select a step in the graph to see its attempts, agent, input and output."));
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "Event timeline" });
  const live = h("span", { class: "muted", "aria-live": "polite" });

  main.append(
    h("p", {}, h("a", { href: "#/workflows" }, "← Workflows")),
    title,
    h("div", { class: "panel" },
      h("div", { class: "row" }, status, pauseBtn, resumeBtn, cancelBtn, live),
      meta, result),
    waiting,
    h("div", { class: "panel" }, h("h2", {}, "Steps"), legend(), dag),
    h("div", { class: "split" },
      h("div", { class: "panel" }, h("h2", {}, "Step"), detail),
      h("div", { class: "panel" }, h("h2", {}, "Timeline"), timeline)),
  );

  async function act(verb) {
    try {
      const r = await post(`/api/executions/${encodeURIComponent(id)}/${verb}`, {});
      view.execution = r.execution;
      render();
      notice(`Execution ${verb === "cancel" ? "cancelled" : verb + "d"}.`);
    } catch (err) {
      notice(`${verb} refused: ${err.message}`, "error");
    }
  }

  // An approval's decision or a signal, sent once: its request id names the wait, so a second click (or a
  // second reviewer) cannot leave a stray signal for a later wait of the same name.
  async function decide(w, payload, buttons) {
    const st = findStep(w.step_id);
    buttons.forEach((b) => (b.disabled = true));
    try {
      await post(`/api/executions/${encodeURIComponent(id)}/signal`, {
        name: w.signal,
        payload,
        request_id: `console:${w.step_id}:${st ? st.attempts : 0}:${st ? st.start_time : ""}`,
      });
      notice(w.kind === "approval" ? `Decision sent: ${payload.decision}.` : `Signal ${w.signal} sent.`);
      refresh();
    } catch (err) {
      buttons.forEach((b) => (b.disabled = false));
      notice(`signal refused: ${err.message}`, "error");
    }
  }

  function renderWaiting(e) {
    const list = e.waiting || [];
    const sig = JSON.stringify(list.map((w) => [w.step_id, w.kind, w.deadline]));
    waiting.hidden = !list.length;
    if (sig === view.waitSig) return; // unchanged: keep what the reviewer is typing
    view.waitSig = sig;
    waiting.replaceChildren(h("h2", {}, "Waiting for"), ...list.map(waitItem));
  }

  function waitItem(w) {
    const head = h("h3", {}, h("span", { class: "mono" }, w.step_id), " ", badge("waiting"));
    const due = w.deadline ? h("p", { class: "muted" }, w.kind === "sleep" || w.kind === "start_after" ? "until " : "times out ", timeEl(w.deadline)) : "";
    const item = h("div", { class: "wait", "data-wait": w.step_id, "data-kind": w.kind }, head);
    if (w.kind === "approval") {
      const comment = h("textarea", { rows: 2, placeholder: "comment (optional)", "aria-label": `comment on ${w.step_id}` });
      const buttons = [];
      const choose = (decision) => () => decide(w, { decision, comment: comment.value }, buttons);
      buttons.push(
        h("button", { type: "button", class: "primary", "data-decision": "approve", onclick: choose("approve") }, "Approve"),
        h("button", { type: "button", class: "danger", "data-decision": "reject", onclick: choose("reject") }, "Reject"),
      );
      for (const b of buttons) {
        b.disabled = !session.canControl;
        if (why) b.title = why;
      }
      item.append(h("p", {}, w.prompt || "Approve to continue."), w.data !== null && w.data !== undefined ? jsonView(w.data) : "", due, comment, h("div", { class: "row" }, ...buttons));
    } else if (w.kind === "signal") {
      const payload = h("textarea", { rows: 2, placeholder: "payload (JSON, optional)", "aria-label": `payload for ${w.signal}` });
      const send = h("button", { type: "button", "data-decision": "signal" }, `Send ${w.signal}`);
      send.disabled = !session.canControl;
      if (why) send.title = why;
      send.onclick = () => {
        let value = null;
        try {
          value = payload.value.trim() ? JSON.parse(payload.value) : null;
        } catch (err) {
          notice(`the payload is not JSON: ${err.message}`, "error");
          return;
        }
        decide(w, value, [send]);
      };
      item.append(h("p", {}, "Waits for the signal ", h("span", { class: "mono" }, w.signal), "."), due, payload, h("div", { class: "row" }, send));
    } else {
      item.append(h("p", {}, w.kind === "sleep" ? "Sleeps" : "Starts after a delay"), due);
    }
    return item;
  }

  async function load() {
    try {
      const r = await get(`/api/executions/${encodeURIComponent(id)}`);
      view.execution = r.execution;
      view.graph = r.graph;
      render();
    } catch (err) {
      notice(err.message, "error");
    }
  }

  function render() {
    const e = view.execution;
    status.replaceChildren(badge(e.status));
    status.dataset.status = e.status;
    pauseBtn.disabled = !session.canControl || !ACTIVE.has(e.status);
    resumeBtn.disabled = !session.canControl || e.status !== "paused";
    cancelBtn.disabled = !session.canControl || TERMINAL.has(e.status);
    for (const b of [pauseBtn, resumeBtn, cancelBtn]) if (why) b.title = why;
    meta.replaceChildren(
      ...kv("Template", `${e.template_name} v${e.template_version}`),
      ...kv("Priority", e.priority),
      ...kv("Created", timeEl(e.create_time)),
      ...kv("Duration", duration(e.start_time, e.end_time) || "—"),
      ...kv("Correlation", h("a", { href: `#/correlations/${encodeURIComponent(e.correlation_id)}`, class: "mono" }, e.correlation_id)),
      ...(e.trace_id ? kv("Trace", h("a", { href: `#/trace/trace_id/${e.trace_id}`, class: "mono" }, e.trace_id)) : []),
      ...(e.error ? kv("Error", h("span", {}, `${e.error.code}: ${e.error.message}`)) : []),
    );
    renderWaiting(e);
    if (e.result !== null && e.result !== undefined && !result.firstChild) {
      result.append(h("details", {}, h("summary", {}, "Result"), jsonView(e.result)));
    }
    // Redrawing replaces the nodes: keep keyboard focus on the step that had it.
    const focused = dag.contains(document.activeElement) ? document.activeElement.dataset.step : null;
    const waits = new Set((e.waiting || []).map((w) => w.step_id));
    dag.replaceChildren(drawDag(view.graph, e.steps, { selected: view.selected, onSelect: select, waiting: waits }));
    if (focused) dag.querySelector(`[data-step="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
    const st = view.selected && findStep(view.selected);
    const sig = st ? JSON.stringify([st.step_id, st.status, st.attempts, st.end_time, st.children.map((c) => c.status)]) : "";
    if (sig && sig !== view.stepSig) renderStep(); // unchanged: keep what the reader has unfolded
    view.stepSig = sig;
  }

  function findStep(stepId) {
    for (const s of view.execution.steps) {
      if (s.step_id === stepId) return s;
      for (const c of s.children) if (c.step_id === stepId) return c;
    }
    return null;
  }

  function select(stepId) {
    view.selected = stepId;
    render();
    const node = dag.querySelector(`[data-step="${CSS.escape(stepId)}"]`);
    if (node) node.focus({ preventScroll: true });
  }

  async function renderStep() {
    const st = findStep(view.selected);
    if (!st) return;
    const spec = view.graph.find((g) => g.id === st.step_id);
    const out = st.structured_output !== null && st.structured_output !== undefined ? jsonView(st.structured_output) : st.output ? folded(st.output) : h("span", { class: "muted" }, "no output yet");
    const input = h("div", { id: "step-input" }, h("span", { class: "muted" }, st.coordination_id ? "loading…" : "—"));
    detail.replaceChildren(
      h("h3", {}, st.name || st.step_id, " ", badge(st.status)),
      h("dl", { class: "kv" },
        ...kv("Step", h("span", { class: "mono" }, st.step_id)),
        ...(spec ? kv("Kind", spec.kind.replace("Spec", "")) : []),
        ...kv("Attempts", String(st.attempts)),
        ...kv("Agent", st.agent_id || "—"),
        ...kv("Started", timeEl(st.start_time)),
        ...kv("Duration", duration(st.start_time, st.end_time) || "—"),
        ...(st.next_retry_time ? kv("Next retry", timeEl(st.next_retry_time)) : []),
        ...(st.error ? kv("Error", `${st.error.code}: ${st.error.message}`) : []),
        ...(st.children.length ? kv("Children", h("span", {}, st.children.map((c) => h("button", { type: "button", class: "chip-link", onclick: () => select(c.step_id) }, c.step_id, " ", badge(c.status))))) : []),
      ),
      h("h3", {}, "Input"), input,
      h("h3", {}, "Output"), h("div", { id: "step-output" }, out),
    );
    if (st.coordination_id) {
      let c = view.coordinations.get(st.coordination_id);
      if (!c || !TERMINAL.has(c.status)) {
        try {
          c = (await get(`/api/coordinations/${encodeURIComponent(st.coordination_id)}`)).coordination;
          view.coordinations.set(st.coordination_id, c);
        } catch (err) {
          input.replaceChildren(h("span", { class: "muted" }, err.message));
          return;
        }
      }
      input.replaceChildren(folded(c.task), Object.keys(c.context || {}).length ? jsonView({ context: c.context }) : "");
    }
  }

  function addEvent(ev) {
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    const what = d.step_id ? `${d.step_id}` : d.reason || "";
    timeline.append(
      h("li", { "data-type": ev.type },
        h("time", { class: "muted mono", datetime: new Date(ev.time * 1000).toISOString() }, clock(ev.time)),
        h("span", { class: "mono" }, ev.type),
        what && h("span", {}, what),
        d.agent_id && h("span", { class: "muted" }, d.agent_id)),
    );
    timeline.scrollTop = timeline.scrollHeight;
  }

  load();
  const refresh = coalesce(load, 100);
  const sub = stream(`/api/executions/${encodeURIComponent(id)}/stream`, {
    onEvent: (ev) => {
      addEvent(ev);
      refresh();
    },
    onEnd: () => {
      live.textContent = "finished";
      refresh();
    },
    onState: (s, err) => (live.textContent = s === "live" ? "● live" : s === "error" ? err.message : s),
  });
  return { unmount: () => sub.close() };
}

function kv(k, v) {
  return [h("dt", {}, k), h("dd", {}, v)];
}

function legend() {
  return h("div", { class: "legend", "aria-hidden": "true" },
    ["pending", "running", "waiting", "retrying", "completed", "failed", "skipped", "cancelled"].map((s) => h("span", { "data-s": s }, h("i"), s)));
}
