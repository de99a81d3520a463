// System: component health, RPC rate / latency / errors from the metric history, each LLM endpoint's
// calls in flight, window and queue (with its 429s and waits), recent errors with a link to each one's
// trace story.
import { get } from "../api.js";
import { badge, h, notice, num, sparkline, timeEl } from "../ui.js";

const POLL_MS = 5000;

export function mount(main) {
  const summary = h("dl", { class: "kv", id: "health-summary" });
  const comps = h("tbody");
  const charts = h("div", { class: "grid", id: "rpc-charts" });
  const llm = h("div", { id: "llm-endpoints" });
  const errors = h("tbody", { id: "errors" });
  main.append(
    h("h1", {}, "System"),
    h("div", { class: "split" },
      h("div", { class: "panel" }, h("h2", {}, "Health"), summary),
      h("div", { class: "panel" }, h("h2", {}, "RPCs (last hour)"), charts)),
    h("div", { class: "panel" }, h("h2", {}, "Components"),
      h("div", { class: "table-wrap" }, h("table", { "aria-label": "Components" },
        h("thead", {}, h("tr", {}, ["Component", "Status", "Message", "Last check", "Check latency", "Errors", "Restarts"].map((c) => h("th", { scope: "col" }, c)))),
        comps))),
    h("div", { class: "panel" }, h("h2", {}, "LLM endpoints (last hour)"), llm),
    h("div", { class: "panel" }, h("h2", {}, "Recent errors"),
      h("div", { class: "table-wrap" }, h("table", { "aria-label": "Recent errors" },
        h("thead", {}, h("tr", {}, ["Time", "Component", "Code", "Message", "Story"].map((c) => h("th", { scope: "col" }, c)))),
        errors))),
  );

  async function load() {
    try {
      const [health, rpc, endpoints, errs] = await Promise.all([get("/api/health"), get("/api/metrics/rpc"), get("/api/metrics/llm"), get("/api/errors?page_size=20")]);
      renderHealth(health);
      renderRpc(rpc);
      renderLlm(endpoints);
      renderErrors(errs.items);
    } catch (err) {
      notice(err.message, "error");
    }
  }

  function renderHealth(x) {
    const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
    summary.replaceChildren(
      ...kv("Overall", badge(x.status)),
      ...kv("Version", x.version),
      ...kv("Started", timeEl(x.start_time)),
      ...kv("Uptime", `${num(x.uptime / 60, 1)} min`),
      ...kv("Workflows", `${x.active_workflows} active · ${x.queued_workflows} queued`),
      ...kv("Agents", `${x.registered_agents} registered · ${x.connected_workers} remote workers`),
      ...kv("Errors", String(x.error_count)),
    );
    comps.replaceChildren(...x.components.map((c) =>
      h("tr", { "data-component": c.name },
        h("td", {}, h("strong", {}, c.name)),
        h("td", {}, badge(c.status)),
        h("td", {}, c.message),
        h("td", {}, timeEl(c.last_check_time)),
        h("td", {}, `${num(c.check_latency * 1000, 2)} ms`),
        h("td", {}, String(c.error_count)),
        h("td", {}, String(c.restart_count)))));
  }

  function renderRpc(r) {
    const pts = r.points;
    const last = pts[pts.length - 1] || {};
    const card = (title, values, value, cls) =>
      h("div", {}, h("h3", {}, title, " ", h("span", { class: "muted" }, value)), sparkline(values, { width: 260, height: 48, label: title, className: cls }));
    charts.replaceChildren(
      card("Calls / s", pts.map((p) => p.rate), num(last.rate, 1)),
      card("Slowest p95 (ms)", pts.map((p) => p.p95_ms), num(last.p95_ms, 1)),
      card("Errors / s", pts.map((p) => p.errors), num(last.errors, 2), "err"),
    );
    if (!pts.length) charts.append(h("p", { class: "muted" }, `Samples appear every ${r.interval} s.`));
  }

  function renderLlm(r) {
    const card = (title, values, value, cls) =>
      h("div", {}, h("h3", {}, title, " ", h("span", { class: "muted" }, value)), sparkline(values, { width: 260, height: 48, label: title, className: cls }));
    llm.replaceChildren(...r.endpoints.map((e) => {
      const pts = e.points;
      const figures = [
        `${e.calls} calls`, `peak ${e.peak_in_flight} in flight`, `${e.throttled} × 429`, `${e.overloaded} overloaded`,
        `${e.failures} failed`, `throttle wait ${num(e.throttle_wait, 1)} s`, `queue wait ${num(e.queue_wait, 1)} s`,
      ];
      if (e.held_for) figures.push(`held ${num(e.held_for, 1)} s`);
      return h("section", { "data-endpoint": e.endpoint },
        h("h3", {}, e.endpoint, " ", e.degraded ? badge("DEGRADED") : null),
        h("p", { class: "muted" }, figures.join(" · "), e.last_error ? ` · last error: ${e.last_error}` : ""),
        h("div", { class: "grid" },
          card("In flight", pts.map((p) => p.in_flight ?? 0), `${e.in_flight}`),
          card("Window", pts.map((p) => p.window ?? 0), `${num(e.window, 1)} / ${e.max_in_flight}`),
          card("Queued", pts.map((p) => p.queue_depth ?? 0), `${e.queue_depth}`, "err")));
    }));
    if (!r.endpoints.length) llm.append(h("p", { class: "muted" }, "No LLM endpoint called yet."));
  }

  function renderErrors(items) {
    errors.replaceChildren(...items.map((e) => {
      const [kind, key] = e.correlation_id ? ["correlation_id", e.correlation_id] : e.trace_id ? ["trace_id", e.trace_id] : [null, null];
      return h("tr", {},
        h("td", {}, timeEl(e.time)),
        h("td", {}, e.component),
        h("td", { class: "mono" }, e.code),
        h("td", {}, e.message),
        h("td", {}, kind ? h("a", { href: `#/trace/${kind}/${encodeURIComponent(key)}` }, "trace story") : "—"));
    }));
    if (!items.length) errors.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No recorded errors.")));
  }

  load();
  const timer = setInterval(load, POLL_MS);
  return { unmount: () => clearInterval(timer) };
}
