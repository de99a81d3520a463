// Agents: kind, capabilities, status, load against max concurrency, success rate, latency, and small
// charts over time (tasks and latency from the metric history, load sampled while the page is open).
import { get, query } from "../api.js";
import { badge, h, notice, num, sparkline } from "../ui.js";

const POLL_MS = 2000;
const KEEP = 60;

export function mount(main) {
  const tbody = h("tbody");
  const loadSeries = new Map();
  let history = { agents: {}, interval: 10 };
  main.append(
    h("h1", {}, "Agents"),
    h("div", { class: "panel" },
      h("p", { class: "muted" }, "Tasks per collection interval and mean latency come from the server's metric history (last hour); load is sampled every 2 s while this page is open."),
      h("div", { class: "table-wrap" }, h("table", { "aria-label": "Agents" },
        h("thead", {}, h("tr", {}, ["Agent", "Kind", "Capabilities", "Status", "Load", "Success", "Latency", "Tasks", "Tasks over time", "Latency over time", "Load over time"].map((c) => h("th", { scope: "col" }, c)))),
        tbody))),
  );

  async function load() {
    try {
      const [agents, hist] = await Promise.all([allAgents(), get("/api/agents/history")]);
      history = hist;
      render(agents);
    } catch (err) {
      notice(err.message, "error");
    }
  }

  // Every page: a page of agents with many labels ends early, with a token.
  async function allAgents() {
    const items = [];
    let token = "";
    do {
      const r = await get("/api/agents" + query({ page_token: token }));
      items.push(...r.items);
      token = r.next_page_token;
    } while (token);
    return items;
  }

  function render(agents) {
    tbody.replaceChildren(
      ...agents.map((a) => {
        const series = loadSeries.get(a.id) || [];
        series.push(a.current_load);
        if (series.length > KEEP) series.shift();
        loadSeries.set(a.id, series);
        const points = history.agents[a.id] || [];
        const kind = a.kind === "llm" && a.llm ? `LLM (${a.llm.model})` : a.kind;
        const pct = a.max_concurrency ? Math.min(100, (100 * a.current_load) / a.max_concurrency) : 0;
        const bar = h("span");
        bar.style.width = `${pct}%`;
        return h("tr", { "data-agent": a.id },
          h("td", {}, h("strong", {}, a.id), h("div", { class: "muted" }, a.name)),
          h("td", {}, kind),
          h("td", {}, a.capabilities.join(", ")),
          h("td", {}, badge(a.status)),
          h("td", {}, h("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": a.max_concurrency, "aria-valuenow": a.current_load, "aria-label": `load ${a.current_load} of ${a.max_concurrency}` }, bar), `${a.current_load} / ${a.max_concurrency}`),
          h("td", {}, `${num(a.success_rate * 100, 1)} %`),
          h("td", {}, a.avg_latency ? `${num(a.avg_latency * 1000, 1)} ms` : "—"),
          h("td", {}, `${num(a.tasks_completed)} ok · ${num(a.tasks_failed)} failed`),
          h("td", {}, sparkline(points.map((p) => p.tasks || 0), { width: 120, height: 32, label: `${a.id} tasks per interval` })),
          h("td", {}, sparkline(points.map((p) => (p.latency_count ? (1000 * p.latency_sum) / p.latency_count : 0)), { width: 120, height: 32, label: `${a.id} mean latency (ms)` })),
          h("td", {}, sparkline(series, { width: 120, height: 32, label: `${a.id} load` })),
        );
      }),
    );
  }

  load();
  const timer = setInterval(load, POLL_MS);
  return { unmount: () => clearInterval(timer) };
}
