// A correlation as a causal tree, and a trace story (events and errors in order, what
// `voltorch errors --correlation` prints).
import { get, query } from "../api.js";
import { badge, clock, h, jsonView, notice } from "../ui.js";

export function mount(main, { params, mode }) {
  if (mode === "correlation") correlation(main, params[0]);
  else story(main, params[0], params[1]);
}

function line(ev) {
  return h("span", {}, h("time", { class: "muted mono", datetime: new Date(ev.time * 1000).toISOString() }, clock(ev.time)), " ",
    h("span", { class: "mono" }, ev.type), " ", h("span", { class: "muted" }, ev.source));
}

async function correlation(main, id) {
  main.append(h("p", {}, h("a", { href: "#/events" }, "← Events")), h("h1", {}, "Correlation ", h("span", { class: "mono" }, id)),
    h("p", {}, h("a", { href: `#/trace/correlation_id/${encodeURIComponent(id)}` }, "Trace story with errors →")));
  try {
    const c = await get(`/api/correlations/${encodeURIComponent(id)}`);
    const byId = new Map(c.nodes.map((n) => [n.event.id, n]));
    const build = (n) => {
      const li = h("li", { "data-event": n.event.id });
      const det = h("details", {}, h("summary", {}, line(n.event)), jsonView(n.event.data));
      li.append(det);
      const kids = n.child_ids.map((k) => byId.get(k)).filter(Boolean);
      if (kids.length) li.append(h("ul", { class: "tree" }, kids.map(build)));
      return li;
    };
    main.append(h("div", { class: "panel" },
      h("ul", { class: "tree", id: "correlation-tree", "aria-label": "Causal tree" }, c.root_ids.map((r) => byId.get(r)).filter(Boolean).map(build)),
      c.truncated ? h("p", { class: "muted" }, "Truncated: the correlation has more events.") : ""));
  } catch (err) {
    notice(err.message, "error");
  }
}

async function story(main, kind, id) {
  main.append(h("p", {}, h("a", { href: "#/system" }, "← System")), h("h1", {}, "Trace story ", h("span", { class: "mono" }, id)));
  try {
    const t = await get("/api/trace" + query({ [kind]: id }));
    main.append(h("div", { class: "panel" },
      h("p", { class: "muted" }, `components: ${t.components.join(", ") || "—"} · traces: ${t.trace_ids.length} · correlations: ${t.correlation_ids.join(", ") || "—"}`),
      h("ol", { class: "timeline", id: "story" }, t.entries.map((x) =>
        x.kind === "event"
          ? h("li", {}, h("details", {}, h("summary", {}, line(x.item)), jsonView(x.item.data)))
          : h("li", { class: "error" }, h("time", { class: "muted mono" }, clock(x.item.time)), badge("failed"), h("strong", {}, ` ${x.item.component} ${x.item.code}`), ` ${x.item.message}`)))));
  } catch (err) {
    notice(err.message, "error");
  }
}
