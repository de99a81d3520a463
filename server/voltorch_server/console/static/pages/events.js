// Events: the log's newest events, then a live tail with Subscribe's filters; pausing buffers new
// events instead of dropping them; a correlation id opens its causal tree.
import { get, query, stream } from "../api.js";
import { clock, h, jsonView, notice } from "../ui.js";

const MAX_ROWS = 500;

export function mount(main) {
  const f = { types: "", source: "", correlation_id: "", min_priority: "" };
  let sub = null;
  let paused = false;
  let buffered = [];
  let older = "";
  const tbody = h("tbody", { id: "tail" });
  const status = h("span", { class: "muted", "aria-live": "polite", id: "tail-state" });
  const pauseBtn = h("button", { type: "button", id: "tail-pause", "aria-pressed": "false", onclick: togglePause }, "Pause");
  const olderBtn = h("button", { type: "button", onclick: loadOlder }, "Load older");
  const field = (id, label, attrs) => h("label", { for: id }, label, h("input", { id, ...attrs }));

  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => (e.preventDefault(), apply()) },
    field("f-types", "Types (globs, comma-separated)", { type: "text", placeholder: "workflow.*, state.changed", size: 28 }),
    field("f-source", "Source", { type: "text", size: 12 }),
    field("f-correlation", "Correlation id", { type: "text", size: 22 }),
    h("label", { for: "f-priority" }, "Minimum priority",
      h("select", { id: "f-priority" }, ["", "low", "normal", "high", "critical"].map((p) => h("option", { value: p }, p || "any")))),
    h("button", { type: "submit", class: "primary", id: "f-apply" }, "Apply"),
    pauseBtn, status);

  main.append(
    h("h1", {}, "Events"),
    h("div", { class: "panel" }, form,
      h("div", { class: "table-wrap tail" }, h("table", { "aria-label": "Event tail" },
        h("thead", {}, h("tr", {}, ["Seq", "Time", "Type", "Source", "Priority", "Correlation", "Data"].map((c) => h("th", { scope: "col" }, c)))),
        tbody)),
      h("div", { class: "pager" }, olderBtn)),
  );

  function row(ev, fresh) {
    const data = h("td", {});
    const more = h("button", { type: "button", "aria-expanded": "false", onclick: () => {
      const open = more.getAttribute("aria-expanded") === "true";
      more.setAttribute("aria-expanded", String(!open));
      more.textContent = open ? "show" : "hide";
      if (open) data.lastChild.remove();
      else data.append(jsonView(ev.data));
    } }, "show");
    data.append(more);
    return h("tr", { class: fresh ? "new" : "", "data-seq": ev.sequence, "data-type": ev.type },
      h("td", { class: "mono" }, String(ev.sequence)),
      h("td", {}, h("time", { datetime: new Date(ev.time * 1000).toISOString(), title: new Date(ev.time * 1000).toLocaleString() }, clock(ev.time))),
      h("td", { class: "mono" }, ev.type),
      h("td", {}, ev.source),
      h("td", {}, ev.priority),
      h("td", {}, ev.correlation_id ? h("a", { class: "mono", href: `#/correlations/${encodeURIComponent(ev.correlation_id)}` }, ev.correlation_id) : ""),
      data);
  }

  function show(events) {
    for (const ev of events) tbody.prepend(row(ev, true));
    while (tbody.children.length > MAX_ROWS) tbody.lastChild.remove();
  }

  function togglePause() {
    paused = !paused;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    pauseBtn.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      show(buffered);
      buffered = [];
    }
    status.textContent = paused ? "paused · 0 new" : "● live";
  }

  function filters() {
    return { types: f.types, source: f.source, correlation_id: f.correlation_id, min_priority: f.min_priority };
  }

  async function apply() {
    f.types = form.querySelector("#f-types").value.trim();
    f.source = form.querySelector("#f-source").value.trim();
    f.correlation_id = form.querySelector("#f-correlation").value.trim();
    f.min_priority = form.querySelector("#f-priority").value;
    if (sub) sub.close();
    buffered = [];
    try {
      const r = await get("/api/events" + query({ ...filters(), page_size: 100 }));
      tbody.replaceChildren(...r.items.map((ev) => row(ev, false)));
      older = r.next_page_token;
      olderBtn.disabled = !older;
      notice("");
      sub = stream("/api/events/stream" + query(filters()), {
        after: r.head_sequence,
        onEvent: (ev) => {
          if (paused) {
            buffered.push(ev);
            status.textContent = `paused · ${buffered.length} new`;
          } else show([ev]);
        },
        onState: (s, err) => (status.textContent = paused ? status.textContent : s === "live" ? "● live" : s === "error" ? err.message : s),
      });
    } catch (err) {
      notice(err.message, "error");
    }
  }

  async function loadOlder() {
    if (!older) return;
    try {
      const r = await get("/api/events" + query({ ...filters(), page_size: 100, page_token: older }));
      for (const ev of r.items) tbody.append(row(ev, false));
      older = r.next_page_token;
      olderBtn.disabled = !older;
    } catch (err) {
      notice(err.message, "error");
    }
  }

  apply();
  return { unmount: () => sub && sub.close() };
}
