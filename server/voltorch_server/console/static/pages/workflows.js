// Workflows: a filterable, paged list with live status, and a form to start one.
import { get, post, query, stream } from "../api.js";
import { badge, coalesce, duration, h, notice, timeEl } from "../ui.js";

const STATUSES = ["", "pending", "queued", "running", "paused", "completed", "failed", "cancelled", "timed_out"];
const PAGE_SIZE = 25;

export function mount(main, { session }) {
  const state = { status: "", template: "", after: "", tokens: [""], page: 0 };
  const tbody = h("tbody");
  const prev = h("button", { type: "button", onclick: () => go(-1) }, "← Newer");
  const next = h("button", { type: "button", onclick: () => go(1) }, "Older →");
  const pageLabel = h("span", { class: "muted" });
  const live = h("span", { class: "muted", "aria-live": "polite" }, "connecting…");
  const templateSelect = h("select", { id: "f-template", onchange: (e) => filter({ template: e.target.value }) }, h("option", { value: "" }, "any template"));

  const filters = h(
    "form",
    { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    h("label", { for: "f-status" }, "Status", h("select", { id: "f-status", onchange: (e) => filter({ status: e.target.value }) }, STATUSES.map((s) => h("option", { value: s }, s || "any status")))),
    h("label", { for: "f-template" }, "Template", templateSelect),
    h("label", { for: "f-after" }, "Created after", h("input", { id: "f-after", type: "datetime-local", onchange: (e) => filter({ after: e.target.value }) })),
    live,
  );

  const requirement = h("input", { id: "start-requirement", type: "text", size: 48, placeholder: "a requirement for the complete workflow", required: true });
  const tplName = h("input", { id: "start-template", type: "text", size: 20, placeholder: "template name" });
  const tplParams = h("input", { id: "start-params", type: "text", size: 28, placeholder: '{"param": "value"}' });
  const disabled = !session.canControl || undefined;
  const why = disabled ? `your role (${session.role}) may not start workflows` : undefined;
  const startForm = h(
    "div",
    { class: "panel" },
    h("h2", {}, "Start a workflow"),
    h("form", { class: "row", onsubmit: (e) => (e.preventDefault(), start({ requirement: requirement.value })) },
      h("label", { class: "sr", for: "start-requirement" }, "Requirement"), requirement,
      h("button", { class: "primary", type: "submit", disabled, title: why }, "Run complete workflow")),
    h("form", { class: "row", onsubmit: (e) => (e.preventDefault(), startTemplate()) },
      h("label", { class: "sr", for: "start-template" }, "Template name"), tplName,
      h("label", { class: "sr", for: "start-params" }, "Parameters (JSON)"), tplParams,
      h("button", { type: "submit", id: "start-template-button", disabled, title: why }, "Start template")),
  );

  main.append(
    h("h1", {}, "Workflows"),
    startForm,
    h("div", { class: "panel" }, filters,
      h("div", { class: "table-wrap" }, h("table", { "aria-label": "Executions" },
        h("thead", {}, h("tr", {}, ["Execution", "Template", "Status", "Progress", "Created", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
        tbody)),
      h("div", { class: "pager" }, prev, pageLabel, next)),
  );

  async function start(body) {
    try {
      const r = await post("/api/executions", body);
      location.hash = `#/workflows/${encodeURIComponent(r.execution.id)}`;
    } catch (err) {
      notice(`Could not start: ${err.message}`, "error");
    }
  }

  function startTemplate() {
    let parameters = {};
    try {
      parameters = tplParams.value.trim() ? JSON.parse(tplParams.value) : {};
    } catch {
      notice("Parameters must be a JSON object.", "error");
      return;
    }
    start({ template_name: tplName.value.trim(), parameters });
  }

  function filter(change) {
    Object.assign(state, change, { tokens: [""], page: 0 });
    load();
  }

  function go(delta) {
    state.page += delta;
    load();
  }

  let loading = null;
  async function load() {
    const ctrl = new AbortController();
    if (loading) loading.abort();
    loading = ctrl;
    try {
      const after = state.after ? new Date(state.after).getTime() / 1000 : "";
      const r = await get(
        "/api/executions" + query({ status: state.status, template: state.template, created_after: after, page_size: PAGE_SIZE, page_token: state.tokens[state.page] }),
        ctrl.signal,
      );
      state.tokens[state.page + 1] = r.next_page_token;
      render(r.items);
      prev.disabled = state.page === 0;
      next.disabled = !r.next_page_token;
      pageLabel.textContent = `page ${state.page + 1}`;
    } catch (err) {
      if (err.name !== "AbortError") notice(err.message, "error");
    }
  }

  function render(items) {
    tbody.replaceChildren(
      ...items.map((e) =>
        h("tr", { "data-id": e.id, "data-status": e.status },
          h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(e.id)}`, class: "mono" }, e.id)),
          h("td", {}, `${e.template_name} v${e.template_version}`),
          h("td", {}, badge(e.status)),
          h("td", {}, h("div", { class: "row" }, progress(e.steps_done, e.steps_total), `${e.steps_done}/${e.steps_total}`)),
          h("td", {}, timeEl(e.create_time)),
          h("td", {}, duration(e.start_time, e.end_time)),
        ),
      ),
    );
    if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No executions match.")));
  }

  // Every page: a page of large templates ends early, with a token.
  const templates = (token) =>
    get("/api/templates" + query({ page_token: token })).then((r) => {
      for (const t of r.items) templateSelect.append(h("option", { value: t.name }, t.name));
      if (r.next_page_token) return templates(r.next_page_token);
    });
  templates("").catch(() => {});

  load();
  const refresh = coalesce(load, 250);
  const sub = stream("/api/events/stream" + query({ types: "workflow.execution.*,workflow.step.*" }), {
    onEvent: refresh,
    onState: (s) => (live.textContent = s === "live" ? "● live" : s),
  });
  return { unmount: () => sub.close() };
}

export function progress(done, total) {
  const meter = h("div", { class: "meter", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": done });
  const bar = h("span");
  bar.style.width = total ? `${Math.round((100 * done) / total)}%` : "0";
  meter.append(bar);
  return meter;
}
