"""The console's HTTP API: each route calls the components the servicers call, nothing else.

A route names the gRPC method it stands for, so the one role policy (`auth.allowed`) decides who may
call it: a `reader` reads, `agent` and `admin` also start, pause, resume and cancel workflows.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from ..components.events import EventFilter
from ..components.system import timeline
from ..errors import InvalidArgument
from ..priority import parse_priority

RPC_METRIC = "rpc.server.duration"
AGENT_METRICS = ("voltorch.agent.tasks", "voltorch.agent.task.duration", "voltorch.agent.load")
LLM_CHARTED = ("in_flight", "window", "queue_depth")  # voltorch.llm.<name> gauges charted per endpoint
HISTORY_WINDOW = 3600.0  # seconds of metric history the charts show


class Query:
    """Query-string parameters with typed, field-named parsing."""

    def __init__(self, raw: str):
        self._values = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def str(self, name: str, default: str = "") -> str:
        return self._values.get(name, default)

    def list(self, name: builtins.str) -> tuple[builtins.str, ...]:
        return tuple(p.strip() for p in self.str(name).split(",") if p.strip())

    def names(self) -> set[builtins.str]:
        return set(self._values)

    def int(self, name: builtins.str, default: int = 0) -> int:
        """A count or a size: a whole number, not negative."""
        raw = self.str(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidArgument(name, f"must be an integer (got {raw!r})") from None
        if value < 0:
            raise InvalidArgument(name, f"must not be negative (got {value})")
        return value

    def float(self, name: builtins.str) -> float | None:
        raw = self.str(name)
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            raise InvalidArgument(
                name, f"must be a number of seconds since the epoch (got {raw!r})"
            ) from None


@dataclass(frozen=True)
class Request:
    runtime: Any
    params: dict[str, str]  # from the path
    query: Query
    body: dict[str, Any]
    last_event_id: int | None  # SSE resume point (Last-Event-ID header or ?after=)
    role: str | None = None  # the caller's role (None: no valid token)
    auth: bool = False  # whether this server requires tokens


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    rpc: str  # the gRPC method this route stands for (its permission)
    handler: Callable[[Request], Any]
    stream: bool = False  # a server-sent event stream: handler returns (follower, stop predicate)
    public: bool = False  # answered without a token (it says who the caller is)
    query: frozenset[str] = frozenset()  # the query parameters it reads: any other is a 400, not ignored


# -- workflows ------------------------------------------------------------------------------------------


def list_executions(r: Request) -> dict[str, Any]:
    items, token = r.runtime.workflows.list(
        status=r.query.str("status"),
        template_name=r.query.str("template"),
        created_after=r.query.float("created_after"),
        created_before=r.query.float("created_before"),
        include_steps=True,
        page_size_=r.query.int("page_size", 25),
        page_token=r.query.str("page_token"),
    )
    return {"items": [_summary(e) for e in items], "next_page_token": token}


def _summary(e: Any) -> dict[str, Any]:
    """A list row: the execution without step outputs (the page only shows progress)."""
    steps = [c for s in e.steps for c in (s.children or (s,))]
    done = sum(s.status in ("completed", "skipped") for s in steps)
    return {
        "id": e.id,
        "template_name": e.template_name,
        "template_version": e.template_version,
        "status": e.status,
        "priority": e.priority,
        "correlation_id": e.correlation_id,
        "create_time": e.create_time,
        "start_time": e.start_time,
        "end_time": e.end_time,
        "steps_done": done,
        "steps_total": len(steps),
        "error": e.error,
    }


def get_execution(r: Request) -> dict[str, Any]:
    e = r.runtime.workflows.get(r.params["id"])
    t = r.runtime.workflows.get_template(e.template_name, e.template_version)
    graph = [
        {
            "id": s.id,
            "name": s.display_name,
            "depends_on": list(s.depends_on),
            "kind": type(s.kind).__name__ if s.kind is not None else "",
        }
        for s in t.steps
    ]
    return {"execution": e, "graph": graph}


def watch_execution(r: Request) -> tuple[Any, Any]:
    start = r.last_event_id + 1 if r.last_event_id is not None else 0  # 0: replay the whole run
    return r.runtime.workflows.watch(r.params["id"], start)


def start_execution(r: Request) -> dict[str, Any]:
    b = r.body
    requirement = b.get("requirement")
    if requirement is not None:
        e, existing = r.runtime.workflows.execute_complete(
            str(requirement), request_id=str(b.get("request_id", "")), priority=_priority(b)
        )
    else:
        params = b.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidArgument("parameters", "must be a JSON object")
        e, existing = r.runtime.workflows.start_execution(
            str(b.get("template_name", "")),
            template_version=_whole(b.get("template_version") or 0, "template_version"),
            parameters=params,
            request_id=str(b.get("request_id", "")),
            priority=_priority(b),
        )
    return {"execution": e, "existing": existing}


def _whole(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, f"must be a whole number (got {value!r})")
    return value


def _priority(b: dict[str, Any]) -> Any:
    return parse_priority(b.get("priority") or None)


def pause(r: Request) -> dict[str, Any]:
    return {"execution": r.runtime.workflows.pause(r.params["id"], str(r.body.get("reason", "")))}


def resume(r: Request) -> dict[str, Any]:
    return {"execution": r.runtime.workflows.resume(r.params["id"])}


def cancel(r: Request) -> dict[str, Any]:
    return {"execution": r.runtime.workflows.cancel(r.params["id"], str(r.body.get("reason", "")))}


def signal(r: Request) -> dict[str, Any]:
    """SignalExecution: an approval's decision or a named signal. Who sent it: the body's `sender`, else
    the caller's role when tokens are required, else "console"."""
    b = r.body
    name, request_id, sender = (_text(b, f) for f in ("name", "request_id", "sender"))
    sig, existing = r.runtime.workflows.signal(
        r.params["id"],
        name,
        b.get("payload"),
        request_id=request_id,
        sender=sender or (r.role or "" if r.auth else "console"),
    )
    return {"signal": sig, "existing": existing}


def _text(b: dict[str, Any], field: str) -> str:
    value = b.get(field, "")
    if not isinstance(value, str):
        raise InvalidArgument(field, f"must be a string (got {value!r})")
    return value


def list_templates(r: Request) -> dict[str, Any]:
    items, token = r.runtime.workflows.list_templates(
        page_size=r.query.int("page_size", 100), page_token=r.query.str("page_token")
    )
    return {
        "items": [{"name": t.name, "version": t.version, "description": t.description} for t in items],
        "next_page_token": token,
    }


# -- agents ---------------------------------------------------------------------------------------------


def list_agents(r: Request) -> dict[str, Any]:
    items, token = r.runtime.coordination.list_agents(
        page_size=r.query.int("page_size", 100), page_token=r.query.str("page_token")
    )
    return {"items": items, "next_page_token": token}


def agent_history(r: Request) -> dict[str, Any]:
    """Per agent and collection interval: tasks, failures, mean latency, load (from the metric history)."""
    report = r.runtime.watcher.metrics_report(
        AGENT_METRICS, include_history=True, since=time.time() - HISTORY_WINDOW
    )
    agents: dict[str, dict[float, dict[str, float]]] = {}
    for series in report.history:
        agent = series.attributes.get("agent.id", "")
        if not agent:
            continue
        for s in series.samples:
            slot = agents.setdefault(agent, {}).setdefault(round(s.time, 3), {})
            if series.name == "voltorch.agent.tasks":
                slot["tasks"] = slot.get("tasks", 0) + s.value
                if series.attributes.get("outcome") == "failure":
                    slot["failures"] = slot.get("failures", 0) + s.value
            elif series.name == "voltorch.agent.task.duration" and s.histogram and s.histogram.count:
                slot["latency_sum"] = slot.get("latency_sum", 0) + s.histogram.sum
                slot["latency_count"] = slot.get("latency_count", 0) + s.histogram.count
            elif series.name == "voltorch.agent.load":
                slot["load"] = s.value
    return {
        "interval": report.interval,
        "agents": {a: [{"time": t, **v} for t, v in sorted(points.items())] for a, points in agents.items()},
    }


def get_coordination(r: Request) -> dict[str, Any]:
    """A step's input (task and context), its agents' results and the selection reasoning."""
    return {"coordination": r.runtime.coordination.get(r.params["id"])}


# -- events ---------------------------------------------------------------------------------------------


def _filter(q: Query) -> EventFilter:
    return EventFilter(
        types=q.list("types"),
        source=q.str("source"),
        correlation_id=q.str("correlation_id"),
        min_priority=parse_priority(q.str("min_priority") or None, "min_priority")
        if q.str("min_priority")
        else 0,
    )


def list_events(r: Request) -> dict[str, Any]:
    page = r.runtime.events.list(
        _filter(r.query),
        page_size_=r.query.int("page_size", 100),
        page_token=r.query.str("page_token"),
        descending=True,
    )
    return {
        "items": page.events,
        "next_page_token": page.next_page_token,
        "head_sequence": page.head_sequence,
    }


def subscribe_events(r: Request) -> tuple[Any, None]:
    flt = _filter(r.query)
    if r.last_event_id is not None:
        return r.runtime.events.subscribe(flt, after=r.last_event_id), None
    return r.runtime.events.subscribe(flt), None  # from the next event published


def correlation(r: Request) -> dict[str, Any]:
    c = r.runtime.events.correlation(r.params["id"], r.query.int("max_events"))
    return {"nodes": c.nodes, "root_ids": c.root_ids, "truncated": c.truncated}


# -- system ---------------------------------------------------------------------------------------------


def health(r: Request) -> Any:
    return r.runtime.watcher.health()


def rpc_metrics(r: Request) -> dict[str, Any]:
    """Per collection interval over the last hour: calls/s, errors/s and the slowest method's p95 (ms)."""
    report = r.runtime.watcher.metrics_report(
        (RPC_METRIC,), include_history=True, since=time.time() - HISTORY_WINDOW
    )
    interval = report.interval or 1.0
    slots: dict[float, dict[str, float]] = {}
    for series in report.history:
        failed = series.attributes.get("rpc.grpc.status_code", "0") != "0"
        for s in series.samples:
            h = s.histogram
            if h is None or not h.count:
                continue
            slot = slots.setdefault(round(s.time, 3), {"calls": 0.0, "errors": 0.0, "p95": 0.0})
            slot["calls"] += h.count
            if failed:
                slot["errors"] += h.count
            slot["p95"] = max(slot["p95"], h.p95)
    points = [
        {"time": t, "rate": v["calls"] / interval, "errors": v["errors"] / interval, "p95_ms": v["p95"]}
        for t, v in sorted(slots.items())
    ]
    return {"interval": interval, "points": points}


def llm_endpoints(r: Request) -> dict[str, Any]:
    """Each LLM endpoint's figures now (its limiter's snapshot) and, per collection interval over the
    last hour, its calls in flight, window and queue depth."""
    report = r.runtime.watcher.metrics_report(
        tuple(f"voltorch.llm.{n}" for n in LLM_CHARTED),
        include_history=True,
        since=time.time() - HISTORY_WINDOW,
    )
    slots: dict[str, dict[float, dict[str, float]]] = {}
    for series in report.history:
        figure = series.name.removeprefix("voltorch.llm.")
        endpoint = slots.setdefault(series.attributes.get("llm.endpoint", ""), {})
        for s in series.samples:
            endpoint.setdefault(round(s.time, 3), {})[figure] = s.value
    endpoints = [
        {
            **asdict(snap),
            "points": [{"time": t, **v} for t, v in sorted(slots.get(snap.endpoint, {}).items())],
        }
        for snap in r.runtime.llm.limiters.snapshots()
    ]
    return {"interval": report.interval, "endpoints": endpoints}


def list_errors(r: Request) -> dict[str, Any]:
    records, token = r.runtime.errors.list(
        component=r.query.str("component"), size=r.query.int("page_size", 20), token=r.query.str("page_token")
    )
    return {"items": records, "next_page_token": token}


def trace(r: Request) -> dict[str, Any]:
    t = timeline(
        r.runtime.events,
        r.runtime.errors,
        trace_id=r.query.str("trace_id"),
        correlation_id=r.query.str("correlation_id"),
        max_entries=r.query.int("max_entries"),
    )
    return {
        "entries": [{"kind": "event" if hasattr(x, "sequence") else "error", "item": x} for x in t.entries],
        "trace_ids": t.trace_ids,
        "correlation_ids": t.correlation_ids,
        "components": t.components,
        "truncated": t.truncated,
    }


def session(r: Request) -> dict[str, Any]:
    """Whether tokens are required and the caller's role: the UI greys out what the role may not do."""
    return {"auth": r.auth, "role": r.role}


_ID = r"(?P<id>[^/]+)"
_WF, _EV, _CO, _OR = (
    "/voltorch.v1.WorkflowService/",
    "/voltorch.v1.EventService/",
    "/voltorch.v1.CoordinationService/",
    "/voltorch.v1.OrchestratorService/",
)


def _route(
    method: str,
    path: str,
    rpc: str,
    handler: Callable[[Request], Any],
    stream: bool = False,
    public: bool = False,
    query: str = "",
) -> Route:
    """`query`: the parameters the handler reads, space-separated (a stream also takes `after`)."""
    names = frozenset(query.split()) | ({"after"} if stream else frozenset())
    return Route(method, re.compile(f"^{path}$"), rpc, handler, stream, public, names)


_PAGE = "page_size page_token"
_EVENT_FILTER = "types source correlation_id min_priority"


ROUTES = [
    _route("GET", "/api/session", _OR + "GetHealth", session, public=True),
    _route(
        "GET",
        "/api/executions",
        _WF + "ListExecutions",
        list_executions,
        query=f"status template created_after created_before {_PAGE}",
    ),
    _route("POST", "/api/executions", _WF + "StartExecution", start_execution),
    _route("GET", f"/api/executions/{_ID}", _WF + "GetExecution", get_execution),
    _route("GET", f"/api/executions/{_ID}/stream", _WF + "WatchExecution", watch_execution, stream=True),
    _route("POST", f"/api/executions/{_ID}/pause", _WF + "PauseExecution", pause),
    _route("POST", f"/api/executions/{_ID}/resume", _WF + "ResumeExecution", resume),
    _route("POST", f"/api/executions/{_ID}/cancel", _WF + "CancelExecution", cancel),
    _route("POST", f"/api/executions/{_ID}/signal", _WF + "SignalExecution", signal),
    _route("GET", "/api/templates", _WF + "ListTemplates", list_templates, query=_PAGE),
    _route("GET", "/api/agents", _CO + "ListAgents", list_agents, query=_PAGE),
    _route("GET", f"/api/coordinations/{_ID}", _CO + "GetCoordination", get_coordination),
    _route("GET", "/api/agents/history", _OR + "GetMetrics", agent_history),
    _route("GET", "/api/events", _EV + "ListEvents", list_events, query=f"{_EVENT_FILTER} {_PAGE}"),
    _route(
        "GET", "/api/events/stream", _EV + "Subscribe", subscribe_events, stream=True, query=_EVENT_FILTER
    ),
    _route("GET", f"/api/correlations/{_ID}", _EV + "GetCorrelation", correlation, query="max_events"),
    _route("GET", "/api/health", _OR + "GetHealth", health),
    _route("GET", "/api/metrics/rpc", _OR + "GetMetrics", rpc_metrics),
    _route("GET", "/api/metrics/llm", _OR + "GetMetrics", llm_endpoints),
    _route("GET", "/api/errors", _OR + "ListErrors", list_errors, query=f"component {_PAGE}"),
    _route("GET", "/api/trace", _OR + "GetTrace", trace, query="trace_id correlation_id max_entries"),
]

__all__ = ["ROUTES", "Query", "Request", "Route"]
