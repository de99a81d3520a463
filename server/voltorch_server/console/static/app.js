// The console shell: session (bearer token in sessionStorage), hash router, page lifecycle.
import { get, token } from "./api.js";
import { h, notice } from "./ui.js";

// Pages load on first visit (dynamic import): the first paint fetches only the modules it draws with.
const workflows = () => import("./pages/workflows.js");
const execution = () => import("./pages/execution.js");
const agents = () => import("./pages/agents.js");
const events = () => import("./pages/events.js");
const system = () => import("./pages/system.js");
const trace = () => import("./pages/trace.js");

export const session = { auth: false, role: null, canControl: false };

const ROUTES = [
  [/^#\/workflows\/([^/]+)$/, execution, "workflows"],
  [/^#\/workflows\/?$/, workflows, "workflows"],
  [/^#\/agents\/?$/, agents, "agents"],
  [/^#\/events\/?$/, events, "events"],
  [/^#\/correlations\/([^/]+)$/, trace, "events", "correlation"],
  [/^#\/trace\/([^/]+)\/([^/]+)$/, trace, "system", "trace"],
  [/^#\/system\/?$/, system, "system"],
];

let current = null;
let sessionReady = null;
let generation = 0;

async function loadSession() {
  const s = await get("/api/session");
  session.auth = s.auth;
  session.role = s.role;
  session.canControl = s.role === "admin" || s.role === "agent";
  const role = document.getElementById("role");
  role.textContent = s.auth ? (s.role ? `signed in · ${s.role}` : "not signed in") : "open server · admin";
  document.getElementById("login").hidden = !s.auth && !token.get();
  document.getElementById("token").hidden = !!s.role;
  document.getElementById("login-button").hidden = !!s.role;
  document.getElementById("logout-button").hidden = !s.role || !s.auth;
}

async function route() {
  if (current && current.unmount) current.unmount();
  current = null;
  const mine = ++generation;
  const hash = location.hash || "#/workflows";
  const main = document.getElementById("main");
  for (const [re, load, nav, mode] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    const [page] = await Promise.all([load(), sessionReady]); // the module and the session in parallel
    if (mine !== generation) return; // navigated elsewhere meanwhile
    for (const a of document.querySelectorAll(".top nav a")) {
      if (a.dataset.page === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    main.replaceChildren();
    notice("");
    if (session.auth && !session.role) {
      main.append(h("div", { class: "panel" }, h("h1", {}, "Sign in"), h("p", {}, "This server requires a bearer token. Paste yours in the field at the top right; it is kept for this browser tab only.")));
      document.getElementById("token").focus();
      return;
    }
    current = page.mount(main, { params: m.slice(1).map(decodeURIComponent), mode, session }) || null;
    return;
  }
  location.hash = "#/workflows";
}

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  token.set(input.value.trim());
  input.value = "";
  sessionReady = loadSession();
  await sessionReady;
  if (session.auth && !session.role) notice("That token was not accepted.", "error");
  route();
});
document.getElementById("logout-button").addEventListener("click", async () => {
  token.set("");
  sessionReady = loadSession();
  await sessionReady;
  route();
});
window.addEventListener("hashchange", () => {
  route().catch((err) => notice(err.message, "error"));
  document.getElementById("main").focus({ preventScroll: true });
});

sessionReady = loadSession();
sessionReady.catch((err) => notice(`Cannot reach the server: ${err.message}`, "error"));
route().catch((err) => notice(err.message, "error"));
