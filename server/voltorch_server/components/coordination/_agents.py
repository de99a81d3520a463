"""The agent registry's records: definition (persisted), live state (load, status) and statistics
(moving window of the last 100 outcomes, persisted with every outcome), plus validation of agent
definitions and the built-in team registered at start.

`AgentState` is mutable and guarded by the coordination engine's lock.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ...agents.base import Agent, ToolSpec
from ...agents.limiter import Limiters
from ...agents.llm import LlmAgent, LlmDefaults, LlmSettings
from ...agents.llm_clients import LlmCalls
from ...agents.offline import OfflineAgent
from ...agents.remote import RemoteAgent
from ...errors import InvalidArgument
from ._model import (
    AGENT_KINDS,
    MAX_CONCURRENCY,
    MAX_LABELS,
    AgentInfo,
    TaskError,
    check_capabilities,
    check_name,
)
from ._selection import AgentView, view_of

WINDOW = 100
ERROR_AFTER_FAILURES = 5  # consecutive failures that put an agent in ERROR (not selected) ...
ERROR_COOLDOWN = 30.0  # ... for this long; then it is tried again and one success clears it
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TOOL_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI's function calling accepts
MAX_TOOL_ITERATIONS = 50

# The team registered at start (Config.builtin_agents): offline agents, or LLM agents with the same ids
# and capabilities when the OpenAI key variable is set.
BUILTIN_TEAM: list[tuple[str, str, tuple[str, ...]]] = [
    ("analyst", "Requirements analyst", ("analysis", "requirements")),
    ("planner", "Planner", ("planning",)),
    ("coder", "Coder", ("coding", "implementation")),
    ("tester", "Tester", ("testing",)),
    ("writer", "Technical writer", ("documentation",)),
    ("reviewer", "Reviewer", ("review", "summary")),
]
BUILTIN_LABEL = "voltorch.builtin"


@dataclass
class AgentState:
    id: str
    name: str
    kind: str
    capabilities: tuple[str, ...]
    max_concurrency: int
    llm: LlmSettings | None
    labels: dict[str, str]
    register_time: float
    runtime: Agent | None = None
    load: int = 0
    window: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # (ok, latency seconds)
    tasks_completed: int = 0
    tasks_failed: int = 0
    last_error: TaskError | None = None
    last_seen: float | None = None
    last_dispatch: float = 0.0
    consecutive_failures: int = 0
    error_until: float = 0.0  # monotonic
    tools: tuple[ToolSpec, ...] = ()  # functions it offers to tool-calling LLM agents
    session_replica: str = ""  # a remote worker: the replica holding its session, as stored ("" = none)
    elsewhere: str = ""  # ... when that is another live replica (its tasks are handed over there)
    _cached_sums: tuple[int, float] | None = field(default=None, repr=False, compare=False)
    _recorded: int = field(default=0, repr=False, compare=False)  # outcomes recorded by this process
    # Statistics not written yet (`Dispatcher.save_stats`: a success is written at most every STATS_EVERY
    # seconds per agent) and when they last were (monotonic).
    stats_unwritten: bool = field(default=False, repr=False, compare=False)
    stats_time: float = field(default=0.0, repr=False, compare=False)
    # the window's entries as JSON text, kept beside it: its row is written with every outcome
    _window_text: deque = field(default_factory=lambda: deque(maxlen=WINDOW), repr=False, compare=False)
    _caps_set: tuple[tuple[str, ...], frozenset[str]] | None = field(default=None, repr=False, compare=False)
    _last_view: tuple[tuple, AgentView] | None = field(default=None, repr=False, compare=False)

    # -- live state ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.runtime is not None and self.runtime.connected

    def status(self, now_mono: float | None = None) -> str:
        if not self.connected:
            return "idle" if self.elsewhere else "offline"  # its load is known where its session is
        if self.error_until and self.error_until > (time.monotonic() if now_mono is None else now_mono):
            return "error"
        return "busy" if self.load > 0 else "idle"

    @property
    def free(self) -> int:
        return self.max_concurrency - self.load

    @property
    def success_rate(self) -> float:
        if not self.window:
            return 1.0
        return self._sums()[0] / len(self.window)

    @property
    def avg_latency(self) -> float:
        if not self.window:
            return 0.0
        return self._sums()[1] / len(self.window)

    def _sums(self) -> tuple[int, float]:
        """(successes, total latency) of the window, kept up to date by record(): selection reads them for
        every agent on every dispatch scan."""
        if self._cached_sums is None:
            self._cached_sums = (sum(1 for ok, _ in self.window if ok), sum(lat for _, lat in self.window))
        return self._cached_sums

    def record(self, ok: bool, latency: float, error: TaskError | None) -> None:
        """Update the statistics with one finished task (failures included)."""
        lat = round(latency, 6)
        sums, window = self._cached_sums, self.window
        if sums is not None and self._recorded % WINDOW:  # kept up to date, recounted every WINDOW outcomes
            n, total = sums[0] + ok, sums[1] + lat
            if len(window) == window.maxlen:  # the oldest entry leaves the window
                old_ok, old_lat = window[0]
                n, total = n - old_ok, total - old_lat
            self._cached_sums = (n, total)
        else:
            self._cached_sums = None
        self._recorded += 1
        window.append((ok, lat))
        self._window_text.append(f"[{int(ok)},{lat!r}]")
        self.last_seen = time.time()
        if ok:
            self.tasks_completed += 1
            self.consecutive_failures = 0
            self.error_until = 0.0
        else:
            self.tasks_failed += 1
            self.last_error = error
            self.consecutive_failures += 1
            if self.consecutive_failures >= ERROR_AFTER_FAILURES:
                self.error_until = time.monotonic() + ERROR_COOLDOWN

    def view(self, now_mono: float) -> AgentView:
        """What selection reads (every agent on every dispatch scan): the window's sums read once, the
        capabilities' set made once per tuple of them, and the last view again (it is frozen) while what it
        is made of has not changed: an agent that is not dispatched keeps its view from step to step."""
        n = len(self.window)
        sums = self._sums() if n else None
        key = (
            self.capabilities,
            self.status(now_mono),
            self.load,
            self.max_concurrency,
            n,
            sums,
            self.last_dispatch,
        )
        last = self._last_view
        if last is not None and last[0] == key:
            return last[1]
        caps = self._caps_set
        if caps is None or caps[0] is not self.capabilities:
            caps = self._caps_set = (self.capabilities, frozenset(self.capabilities))
        if sums is not None:
            rate, latency = sums[0] / n, sums[1] / n
        else:
            rate, latency = 1.0, 0.0
        view = view_of(
            self.id, caps[1], key[1], self.load, self.max_concurrency, rate, latency, self.last_dispatch
        )
        self._last_view = (key, view)
        return view

    def info(self) -> AgentInfo:
        rate = self.success_rate
        last_seen = self.last_seen
        session = getattr(self.runtime, "session", None)
        if session is not None:
            last_seen = max(last_seen or 0.0, session.last_seen_time)
        return AgentInfo(
            id=self.id,
            name=self.name,
            kind=self.kind,
            capabilities=self.capabilities,
            max_concurrency=self.max_concurrency,
            status=self.status(),
            current_load=self.load,
            success_rate=rate,
            error_rate=(1.0 - rate) if self.window else 0.0,
            avg_latency=self.avg_latency,
            tasks_completed=self.tasks_completed,
            tasks_failed=self.tasks_failed,
            llm=self.llm,
            labels=dict(self.labels),
            register_time=self.register_time,
            last_seen_time=last_seen,
            last_error=self.last_error,
            tools=self.tools,
        )

    # -- persistence --------------------------------------------------------------------------------

    def definition_params(self) -> tuple:
        return (
            self.name,
            self.kind,
            json.dumps(list(self.capabilities)),
            self.max_concurrency,
            json.dumps(self.llm.to_dict()) if self.llm else None,
            json.dumps(self.labels, sort_keys=True),
            json.dumps([t.to_dict() for t in self.tools]) if self.tools else None,
        )

    def stats_params(self) -> tuple:
        return (
            "[" + ",".join(self._window_texts()) + "]",
            self.tasks_completed,
            self.tasks_failed,
            json.dumps(self.last_error.to_dict()) if self.last_error else None,
            self.last_seen,
        )

    def _window_texts(self) -> deque:
        if len(self._window_text) != len(self.window):  # loaded from a row: rendered once
            self._window_text = deque((f"[{int(ok)},{lat!r}]" for ok, lat in self.window), maxlen=WINDOW)
        return self._window_text

    def refresh(self, stored: AgentState) -> None:
        """Take another replica's change of this agent: definition and statistics as stored."""
        self.name, self.kind, self.capabilities = stored.name, stored.kind, stored.capabilities
        self.max_concurrency, self.llm, self.labels = stored.max_concurrency, stored.llm, stored.labels
        self.tools, self.session_replica = stored.tools, stored.session_replica
        self.window, self._window_text, self._cached_sums = stored.window, stored._window_text, None
        self.tasks_completed, self.tasks_failed = stored.tasks_completed, stored.tasks_failed
        self.last_error, self.last_seen = stored.last_error, stored.last_seen

    @classmethod
    def from_row(cls, row: Any) -> AgentState:
        s = cls(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            capabilities=tuple(json.loads(row["capabilities"])),
            max_concurrency=row["max_concurrency"],
            llm=LlmSettings.from_dict(json.loads(row["llm"])) if row["llm"] else None,
            labels=json.loads(row["labels"]),
            register_time=row["register_time"],
            tasks_completed=row["tasks_completed"],
            tasks_failed=row["tasks_failed"],
            last_error=TaskError.from_dict(json.loads(row["last_error"])) if row["last_error"] else None,
            last_seen=row["last_seen"],
            tools=tuple(ToolSpec(**t) for t in json.loads(row["tools"] or "[]")),
            session_replica=row["session_replica"],
        )
        s.window.extend((bool(ok), lat) for ok, lat in json.loads(row["window"]))
        return s


def make_runtime(
    kind: str,
    llm: LlmSettings | None,
    defaults: LlmDefaults,
    metrics: Any = None,
    limiters: Limiters | None = None,
    llm_calls: LlmCalls | None = None,
) -> Agent | None:
    """A fresh runtime for an agent kind (function agents get theirs from whoever registers them)."""
    if kind == "offline":
        return OfflineAgent()
    if kind == "llm":
        return LlmAgent(
            llm or LlmSettings(),
            defaults,
            on_call=getattr(metrics, "record_llm_call", None),
            limiters=limiters,
            calls=llm_calls,
        )
    if kind == "remote":
        return RemoteAgent()
    return None


# -- validation ------------------------------------------------------------------------------------


def check_kind(kind: str, field_name: str = "kind") -> str:
    if kind not in AGENT_KINDS:
        raise InvalidArgument(
            field_name,
            f"unknown agent kind {kind!r}; use one of {', '.join(AGENT_KINDS)}",
            reason="ENUM_VALUE_INVALID",
        )
    return kind


def check_max_concurrency(value: int, field_name: str = "max_concurrency") -> int:
    if value < 0 or value > MAX_CONCURRENCY:
        raise InvalidArgument(field_name, f"must be 0..{MAX_CONCURRENCY} (0 = 1), got {value}")
    return value or 1


def check_labels(labels: dict[str, str] | None, field_name: str = "labels") -> dict[str, str]:
    labels = dict(labels or {})
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(field_name, f"at most {MAX_LABELS} labels (got {len(labels)})")
    for k, v in labels.items():
        if not isinstance(k, str) or not 0 < len(k) <= 128:
            raise InvalidArgument(f"{field_name}[{k!r}]", "a label key is 1..128 characters")
        if not isinstance(v, str) or len(v) > 1024:
            raise InvalidArgument(
                f"{field_name}[{k!r}]", "a label value is a string of at most 1024 characters"
            )
    return labels


def check_llm(kind: str, llm: LlmSettings | None, field_name: str = "llm") -> LlmSettings | None:
    if kind != "llm":
        if llm is not None and llm != LlmSettings():
            raise InvalidArgument(field_name, f"LLM settings are only for kind llm (this agent is {kind})")
        return None
    llm = llm or LlmSettings()
    if len(llm.model) > 256:
        raise InvalidArgument(f"{field_name}.model", "at most 256 characters")
    if llm.base_url and not re.match(r"https?://[^\s]+$", llm.base_url):
        raise InvalidArgument(
            f"{field_name}.base_url", "must be an http(s) URL, e.g. http://localhost:11434/v1"
        )
    if llm.api_key_env and not _ENV_RE.fullmatch(llm.api_key_env):
        raise InvalidArgument(
            f"{field_name}.api_key_env", "must be an environment variable name, e.g. OPENAI_API_KEY"
        )
    if len(llm.system_prompt.encode()) > 32 * 1024:
        raise InvalidArgument(f"{field_name}.system_prompt", "at most 32 KiB")
    if llm.temperature is not None and not 0 <= llm.temperature <= 2:
        raise InvalidArgument(f"{field_name}.temperature", f"must be 0..2, got {llm.temperature}")
    if llm.timeout is not None and not 0 < llm.timeout <= 600:
        raise InvalidArgument(
            f"{field_name}.timeout", f"must be > 0 and at most 10 minutes, got {llm.timeout}"
        )
    if llm.max_tokens is not None and llm.max_tokens <= 0:
        raise InvalidArgument(f"{field_name}.max_tokens", f"must be positive, got {llm.max_tokens}")
    for i, name in enumerate(llm.tools):
        if not _TOOL_RE.fullmatch(name):
            raise InvalidArgument(
                f"{field_name}.tools[{i}]", f"a tool name is 1..64 of [A-Za-z0-9_-], got {name!r}"
            )
    if not 0 <= llm.max_tool_iterations <= MAX_TOOL_ITERATIONS:
        raise InvalidArgument(
            f"{field_name}.max_tool_iterations",
            f"must be 0..{MAX_TOOL_ITERATIONS} (0 = 8), got {llm.max_tool_iterations}",
        )
    return llm


def check_tools(
    tools: tuple[ToolSpec, ...] | list[ToolSpec], field_name: str = "tools"
) -> tuple[ToolSpec, ...]:
    """Tools an agent offers: OpenAI-compatible names, unique; arguments described by an object schema."""
    seen: set[str] = set()
    for i, t in enumerate(tools):
        where = f"{field_name}[{i}]"
        if not _TOOL_RE.fullmatch(t.name or ""):
            raise InvalidArgument(f"{where}.name", f"a tool name is 1..64 of [A-Za-z0-9_-], got {t.name!r}")
        if t.name in seen:
            raise InvalidArgument(f"{where}.name", f"tool {t.name!r} is listed twice")
        seen.add(t.name)
        if len(t.description) > 1024:
            raise InvalidArgument(f"{where}.description", "at most 1024 characters")
        params = t.parameters
        if params is not None and (
            params.get("type", "object") != "object" or not isinstance(params.get("properties", {}), dict)
        ):
            raise InvalidArgument(
                f"{where}.parameters",
                'must be a JSON schema of an object: {"type": "object", "properties": {...}}',
            )
        if params is not None and len(json.dumps(params)) > 16 * 1024:
            raise InvalidArgument(f"{where}.parameters", "at most 16 KiB of JSON")
    return tuple(tools)


def check_definition(
    agent_id: str,
    kind: str,
    capabilities: tuple[str, ...] | list[str],
    max_concurrency: int,
    llm: LlmSettings | None,
    labels: dict[str, str] | None,
    name: str,
) -> tuple[tuple[str, ...], int, LlmSettings | None, dict[str, str]]:
    check_name(agent_id, "agent_id")
    check_kind(kind)
    caps = check_capabilities(tuple(capabilities), "capabilities")
    if len(name) > 256:
        raise InvalidArgument("name", "at most 256 characters")
    return caps, check_max_concurrency(max_concurrency), check_llm(kind, llm), check_labels(labels)
