// The console's HTTP API: JSON calls and server-sent event streams, with the session's bearer token.
const TOKEN_KEY = "voltorch.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (t) => (t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY)),
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.reason = body && body.error && body.error.reason;
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function get(path, signal) {
  const r = await fetch(path, { headers: headers(), signal });
  const body = await r.json();
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

export async function post(path, data = {}) {
  const r = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(data),
  });
  const body = await r.json();
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// Follow a server-sent event stream. Each message's id is the event sequence: after a drop the
// stream is reopened with Last-Event-ID, so nothing is lost or repeated. fetch (not EventSource)
// so the bearer token travels in a header, never in the URL.
export function stream(path, { onEvent, onEnd, onState, after } = {}) {
  let lastId = after ?? null;
  let stopped = false;
  let controller = null;
  let retry = 1000;

  async function run() {
    while (!stopped) {
      controller = new AbortController();
      const h = headers({ Accept: "text/event-stream" });
      if (lastId !== null) h["Last-Event-ID"] = String(lastId);
      try {
        const r = await fetch(path, { headers: h, signal: controller.signal });
        if (!r.ok) {
          const body = await r.json().catch(() => null);
          throw new ApiError(r.status, body);
        }
        onState && onState("live");
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const msg = { event: "message", data: "", id: null };
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const i = line.indexOf(":");
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              if (field === "data") msg.data += val;
              else if (field === "id") msg.id = val;
              else if (field === "event") msg.event = val;
              else if (field === "retry") retry = Number(val) || retry;
            }
            if (msg.id !== null) lastId = Number(msg.id);
            if (msg.event === "end") {
              stopped = true;
              onEnd && onEnd();
              return;
            }
            if (msg.event === "event" && msg.data) onEvent(JSON.parse(msg.data));
          }
        }
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && [400, 401, 403, 404, 410].includes(err.status)) {
          onState && onState("error", err);
          return;
        }
      }
      if (stopped) return;
      onState && onState("reconnecting");
      await new Promise((res) => setTimeout(res, retry));
    }
  }
  run();
  return {
    close() {
      stopped = true;
      if (controller) controller.abort();
    },
    get lastId() {
      return lastId;
    },
  };
}
