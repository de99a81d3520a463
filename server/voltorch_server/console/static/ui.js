// Small DOM helpers: element builder, formatting in the viewer's locale, JSON viewer, sparklines.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const timeFmt = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export function when(seconds) {
  if (!seconds) return "";
  return dateFmt.format(new Date(seconds * 1000));
}

export function clock(seconds) {
  if (!seconds) return "";
  return timeFmt.format(new Date(seconds * 1000));
}

export function timeEl(seconds, short = false) {
  if (!seconds) return h("span", { class: "muted" }, "—");
  const d = new Date(seconds * 1000);
  return h("time", { datetime: d.toISOString(), title: d.toLocaleString() }, short ? clock(seconds) : when(seconds));
}

export function duration(start, end) {
  if (!start) return "";
  const secs = (end || Date.now() / 1000) - start;
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  if (secs < 90) return `${secs.toFixed(secs < 10 ? 2 : 1)} s`;
  const m = Math.floor(secs / 60);
  return m < 90 ? `${m} min ${Math.round(secs % 60)} s` : `${(m / 60).toFixed(1)} h`;
}

export const num = (v, digits = 0) =>
  v === null || v === undefined ? "—" : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits });

export function badge(status) {
  const st = String(status || "").toLowerCase();
  return h("span", { class: "badge", "data-s": st }, st.replace("_", " "));
}

let noticeTimer = null;
export function notice(message, kind = "info") {
  const el = document.getElementById("notice");
  clearTimeout(noticeTimer);
  if (!message) {
    el.hidden = true;
    return;
  }
  el.dataset.kind = kind;
  el.textContent = message;
  el.hidden = false;
  if (kind === "info") noticeTimer = setTimeout(() => (el.hidden = true), 4000); // errors stay until the next page
}

const LONG = 400;

// A text shown folded when it is long: the first lines, and the rest behind a <details>.
export function folded(text) {
  text = String(text ?? "");
  if (text.length <= LONG && text.split("\n").length <= 8) return h("pre", { class: "mono folded-short" }, text);
  const head = text.slice(0, 200).split("\n").slice(0, 3).join("\n");
  return h("details", { class: "folded" }, h("summary", {}, `${head}… (${text.length.toLocaleString()} characters)`), h("pre", {}, text));
}

// A collapsible JSON tree; strings longer than a few lines are folded.
export function jsonView(value) {
  return h("div", { class: "json", role: "tree" }, jsonNode(value, 0));
}

function jsonNode(v, depth) {
  if (v === null || v === undefined) return h("span", { class: "b" }, "null");
  if (typeof v === "string") {
    if (v.length > LONG || v.split("\n").length > 8) return folded(v);
    return h("span", { class: "s" }, JSON.stringify(v));
  }
  if (typeof v === "number") return h("span", { class: "n" }, String(v));
  if (typeof v === "boolean") return h("span", { class: "b" }, String(v));
  const isArr = Array.isArray(v);
  const entries = isArr ? v.map((x, i) => [i, x]) : Object.entries(v);
  if (!entries.length) return h("span", {}, isArr ? "[]" : "{}");
  const d = h("details", { open: depth < 2 || undefined });
  d.append(h("summary", {}, isArr ? `[ ${entries.length} items ]` : `{ ${entries.length} keys }`));
  for (const [k, x] of entries) {
    d.append(h("div", {}, h("span", { class: "k" }, isArr ? `${k}: ` : `${JSON.stringify(k)}: `), jsonNode(x, depth + 1)));
  }
  return d;
}

// A small line chart of values over time (hand-written SVG; no library needed for this).
export function sparkline(values, { width = 220, height = 44, label = "", className = "" } = {}) {
  const svg = s("svg", { class: `spark ${className}`, width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  if (!values.length) {
    svg.append(s("text", { x: 4, y: height / 2 + 4, "font-size": 11, fill: "#6b7385" }, "no samples yet"));
    return svg;
  }
  const max = Math.max(...values, 1e-9);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const pts = values.map((v, i) => [i * step, height - 3 - (v / max) * (height - 8)]);
  if (pts.length === 1) pts.push([width, pts[0][1]]);
  const line = pts.map((p, i) => `${i ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join("");
  svg.append(s("path", { class: "area", d: `${line}L${width},${height}L0,${height}Z` }));
  svg.append(s("path", { class: "line", d: line }));
  svg.append(s("title", {}, label));
  return svg;
}

// Calls fn once per `ms` at most, after the first request of each window (bursts of live events coalesce).
export function coalesce(fn, ms) {
  let t = null;
  return (...args) => {
    if (t) return;
    t = setTimeout(() => {
      t = null;
      fn(...args);
    }, ms);
  };
}
