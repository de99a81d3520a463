// The step DAG as hand-written SVG: layers by longest path from the roots, left to right; a node's
// colour is its status; fan-out children are grouped inside their parent as a grid of chips.
import { s } from "./ui.js";

const W = 176, H = 50, GAP_X = 56, GAP_Y = 18, CHIP = 12, CHIP_GAP = 4, PER_ROW = 10;

export function drawDag(graph, steps, { selected, onSelect, waiting = new Set() }) {
  const byId = new Map(steps.map((x) => [x.step_id, x]));
  const depth = new Map();
  const specs = new Map(graph.map((n) => [n.id, n]));
  const level = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const deps = (specs.get(id)?.depends_on || []).filter((d) => specs.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map((x) => level(x, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  graph.forEach((n) => level(n.id));
  const layers = [];
  for (const n of graph) (layers[depth.get(n.id)] ||= []).push(n);

  const heightOf = (n) => {
    const kids = byId.get(n.id)?.children || [];
    return kids.length ? H + 8 + Math.ceil(kids.length / PER_ROW) * (CHIP + CHIP_GAP) : H;
  };
  const pos = new Map();
  let totalH = 0;
  layers.forEach((layer, i) => {
    let y = 10;
    for (const n of layer) {
      const hgt = heightOf(n);
      pos.set(n.id, { x: 10 + i * (W + GAP_X), y, h: hgt });
      y += hgt + GAP_Y;
    }
    totalH = Math.max(totalH, y);
  });
  const width = 20 + layers.length * (W + GAP_X) - GAP_X;
  const svg = s("svg", { width, height: totalH, viewBox: `0 0 ${width} ${totalH}`, role: "group", "aria-label": "Step graph" });

  for (const n of graph) {
    const to = pos.get(n.id);
    for (const d of n.depends_on) {
      const from = pos.get(d);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  svg.prepend(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#b7bdca" }))),
  );

  for (const n of graph) {
    const p = pos.get(n.id);
    const st = byId.get(n.id);
    // A running step that waits (for an approval, a signal or a timer) shows as waiting.
    const status = st?.status === "running" && waiting.has(n.id) ? "waiting" : st?.status || "pending";
    const kids = st?.children || [];
    const sub = kids.length
      ? `${kids.filter((k) => k.status === "completed").length}/${kids.length} done · fan-out`
      : [status, st?.agent_id, st && st.attempts > 1 ? `${st.attempts} attempts` : ""].filter(Boolean).join(" · ");
    const g = s("g", {
      class: `node${selected === n.id ? " selected" : ""}`,
      "data-step": n.id,
      "data-s": status,
      transform: `translate(${p.x},${p.y})`,
      tabindex: 0,
      role: "button",
      "aria-label": `step ${n.name}: ${status}`,
      onclick: () => onSelect(n.id),
      onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), onSelect(n.id)),
    });
    g.append(
      s("rect", { class: "box", width: W, height: p.h }),
      s("rect", { class: "bar", width: 6, height: p.h }),
      s("text", { x: 14, y: 20 }, clip(n.name, 22)),
      s("text", { x: 14, y: 38, class: "sub" }, clip(sub, 28)),
      s("title", {}, `${n.id} (${status})`),
    );
    kids.forEach((k, i) => {
      const chip = s("rect", {
        class: "chip",
        "data-step": k.step_id,
        "data-s": k.status,
        x: 14 + (i % PER_ROW) * (CHIP + CHIP_GAP),
        y: H + 2 + Math.floor(i / PER_ROW) * (CHIP + CHIP_GAP),
        width: CHIP,
        height: CHIP,
        rx: 3,
        tabindex: 0,
        role: "button",
        "aria-label": `${k.step_id}: ${k.status}`,
        onclick: (e) => (e.stopPropagation(), onSelect(k.step_id)),
        onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), e.stopPropagation(), onSelect(k.step_id)),
      });
      chip.append(s("title", {}, `${k.step_id} ${k.name} (${k.status})`));
      g.append(chip);
    });
    svg.append(g);
  }
  return svg;
}

const clip = (t, n) => (t.length > n ? t.slice(0, n - 1) + "…" : t);
