"""Server settings: defaults < config file (TOML or JSON) < VOLTORCH_* environment < command line."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from . import cpus

ENV_PREFIX = "VOLTORCH_"


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 picks a free port (printed at start)
    db: str = "./voltorch.db"
    db_synchronous: str = "NORMAL"  # WAL + NORMAL survives kill -9; FULL also survives power loss
    # SQLite: concurrent workflow steps' transactions sharing one COMMIT (and fsync) at most; 1 = each alone.
    db_group_commit: int = 32
    # With `db` a PostgreSQL DSN (several replicas share everything else), the SQLite file this replica
    # keeps its own error log and metric history in.
    # "" = ./voltorch-replica-<port>.db (in memory for port 0).
    local_db: str = ""
    # Cluster membership: this replica's id ("" = generated at each start: host name + random suffix), and
    # the heartbeat timeout after which a member is dead for every replica (heartbeats every timeout / 4).
    # Dead members stay listed for member_retention seconds, then are pruned.
    replica_id: str = ""
    member_timeout: float = 10.0
    member_retention: float = 300.0
    db_quick_check: bool = True  # PRAGMA quick_check at start: a damaged file is refused (O(file size))
    # Threads: grpcio holds one per in-flight RPC, streams included. At most `max_streams` are given to
    # long-lived streams and `max_anonymous_streams` to anonymous ones (health Watch and reflection
    # without a valid token, counted apart so that they cannot lock subscribers out), so
    # `max_workers - max_streams - max_anonymous_streams` always remain for unary calls.
    max_workers: int = 768
    max_streams: int = 512
    max_anonymous_streams: int = 16
    max_concurrent_rpcs: int = 2048  # beyond this new RPCs get RESOURCE_EXHAUSTED instead of queueing
    max_message_bytes: int = 4 * 1024 * 1024
    subscriber_buffer: int = 10000  # events buffered per subscriber before its stream is ended
    # Batched event streams of a busy log gather what arrives for up to active streams / budget seconds
    # (at most stream_max_coalesce) into one message, so fan-out stays near this many messages per second
    # (each costs ~65-80 µs of server CPU on one core, ~100 spread over two); a quiet stream sends at once.
    # 0 = every message at once.
    stream_message_budget: float = 5000.0
    stream_max_coalesce: float = 0.015
    shutdown_grace: float = 10.0
    # `voltorch serve`'s CPUs: auto = one of those it may use (its threads pass the GIL to each other far
    # more cheaply on one core: voltorch_server/cpus.py), all = wherever the OS puts them, or a list "0,2-3".
    cpu_affinity: str = "auto"
    # With auto: how often (seconds) it looks whether other work keeps its CPU busy, to move to an idler one.
    cpu_affinity_recheck: float = 5.0
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json" (one object per line, with the trace id)
    log_destination: str = "stderr"  # "stderr", "file" or "both"
    log_file: str = ""
    # Security: bearer tokens with roles ("role:token,role:token" and/or a JSON file {"token": "role"});
    # none configured = open. TLS from PEM files; tls_client_ca makes it mutual TLS (client certs required).
    auth_tokens: str = ""
    auth_tokens_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Event retention (0 = keep forever)
    event_retention_seconds: float = 0.0
    event_retention_count: int = 0
    event_compaction_interval: float = 60.0  # seconds between retention runs (when a retention is set)
    # Coordination: LLM defaults (the key itself is only ever read from the env var named here),
    # the built-in agent team, remote-worker liveness, request timeout and queue aging.
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str = ""  # empty = OpenAI's API; any OpenAI-compatible endpoint (vLLM, Ollama, ...)
    openai_api_key_env: str = "OPENAI_API_KEY"
    openai_timeout: float = 60.0  # per LLM call
    llm_max_retries: int = 3  # retries of 429 / 5xx / connection errors, with backoff and Retry-After
    builtin_agents: bool = True  # register analyst, planner, coder, tester, writer, reviewer at start
    builtin_agent_concurrency: int = 4  # offline built-ins; LLM built-ins take llm_max_in_flight
    # LLM endpoints: one limiter per base URL + key + model, shared by every LLM agent on it. Its window of
    # calls in flight starts at llm_initial_window, grows while calls succeed and the window is full, shrinks
    # by llm_backoff on 429 / 503 / timeouts (honouring Retry-After and x-ratelimit-* headers), and never
    # exceeds llm_max_in_flight. Optional per-minute quotas (0 = none). llm_degraded_after consecutive
    # failed calls report the endpoint DEGRADED in GetHealth.
    llm_max_in_flight: int = 256
    llm_initial_window: int = 32
    llm_backoff: float = 0.9
    llm_requests_per_minute: float = 0.0
    llm_tokens_per_minute: float = 0.0
    llm_degraded_after: int = 5
    # The LLM agents' HTTP calls (the `openai` client) run in a child process, off the server's GIL; true
    # runs them on the agents' threads in the server's process.
    llm_in_process: bool = False
    worker_heartbeat_interval: float = 5.0
    worker_heartbeat_timeout: float = 15.0
    coordination_timeout: float = 300.0  # default per-request deadline, queueing included
    coordination_aging_seconds: float = 30.0  # waiting this long raises a request one priority level
    coordination_max_attempts: int = 5  # dispatches of one task (re-dispatch after a lost worker)
    agent_threads: int = 256  # threads running in-process agents (offline, LLM, function)
    # Live text of streaming agents: one agent.output.delta event per batch of this age or size.
    delta_interval: float = 0.1
    delta_chars: int = 200
    # Prices of LLM calls for usage and budgets: "model=in/out,..." in USD per million tokens
    # (e.g. "gpt-4o-mini=0.15/0.60"); a model not listed costs 0.
    llm_prices: str = ""
    # Workflows: executions running at once (more are queued by priority, never rejected) and the threads
    # that wait on their in-flight steps. Executions waiting on an LLM do not starve the endpoint: while the
    # LLM endpoints' windows are larger, up to twice their sum run (see WorkflowEngine).
    workflow_concurrency: int = 100
    workflow_threads: int = 256
    # Watcher: health checks, automatic restarts with exponential backoff up to a limit.
    watch_interval: float = 5.0  # seconds between health checks of every component
    health_check_timeout: float = 5.0  # a check that has not returned by then fails
    health_slow_seconds: float = 1.0  # a passing check slower than this reports DEGRADED
    restart_limit: int = 5  # automatic restarts of a failing component before the watcher gives up
    restart_backoff: float = 1.0  # wait before the 2nd automatic restart; doubles per attempt
    restart_backoff_max: float = 60.0
    restart_stable_seconds: float = 300.0  # passing this long after a failure resets the restart count
    # Metrics: OpenTelemetry; history persisted every interval; Prometheus /metrics when a port is set.
    metrics_interval: float = 10.0  # seconds between collections (history, system.metrics.collected)
    metrics_retention_seconds: float = 21600.0  # metric history kept in SQLite
    error_retention_seconds: float = 7 * 86400.0  # recorded errors kept in SQLite
    # The web console (HTTP, same host and tokens as gRPC): 0 = off, -1 = any free port.
    # `make run` / `make serve` use 8233.
    ui_port: int = 0
    prometheus_port: int = 0  # 0 = off; -1 = any free port (shown in GetHealth's watcher details)
    # Tracing: a span per RPC, W3C context continued from clients. OTLP export from the standard OTEL_*
    # variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER, ...); trace_export adds a local
    # exporter for debugging: "console" (stderr) or a file path (one JSON span per line).
    tracing: bool = True
    trace_export: str = ""
    record_client_errors: bool = False  # also record INVALID_ARGUMENT, NOT_FOUND, ... RPC errors

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_overrides(self, **values: Any) -> Config:
        """Apply overrides, ignoring None (flags that were not given)."""
        return replace(self, **_coerce({k: v for k, v in values.items() if v is not None}))


# Settings with a bounded range (inclusive): out of range is refused, not wrapped (70000 is not 4464).
RANGES: dict[str, tuple[int, int]] = {
    "port": (0, 65535),
    "prometheus_port": (-1, 65535),
    "ui_port": (-1, 65535),
    "stream_message_budget": (0, 10**9),
    "stream_max_coalesce": (0, 1),
    "member_retention": (0, 10**9),
    "db_group_commit": (1, 1000),
    "cpu_affinity_recheck": (0, 86400),
}

# Settings that must be above zero (a zero timeout would declare every member dead at once).
POSITIVE = frozenset({"member_timeout"})


def parse_prices(text: str) -> dict[str, tuple[float, float]]:
    """The llm_prices setting, "model=in/out,..." in USD per million tokens; ValueError names a bad entry."""
    prices = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        model, sep, pair = entry.rpartition("=")
        per_in, slash, per_out = pair.partition("/")
        try:
            if not (sep and slash and model.strip()):
                raise ValueError
            prices[model.strip()] = (float(per_in), float(per_out))
        except ValueError:
            raise ValueError(f"llm_prices: {entry!r} is not model=in/out (USD per million tokens)") from None
        if min(prices[model.strip()]) < 0:
            raise ValueError(f"llm_prices: {entry!r} has a negative price")
    return prices


# A replica id is shown in GetHealth and logs and keys its members row; "" means generate one.
_REPLICA_ID = re.compile(r"[A-Za-z0-9._:-]{0,128}")


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Config)}
    for key, raw in values.items():
        if key not in types:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(types))}")
        kind = types[key]
        try:
            if kind == "bool":
                out[key] = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
            elif kind == "int":
                out[key] = int(raw)
            elif kind == "float":
                out[key] = float(raw)
            else:
                out[key] = str(raw)
        except (TypeError, ValueError):
            raise ValueError(f"setting {key!r} must be {kind}, got {raw!r}") from None
        if key == "llm_prices":
            parse_prices(out[key])  # refused at start-up, naming the entry
        if key == "cpu_affinity":
            cpus.parse(out[key])
        if key == "replica_id" and not _REPLICA_ID.fullmatch(out[key]):
            raise ValueError(
                f"setting 'replica_id' must be up to 128 letters, digits or . _ : - (no spaces), got {out[key]!r}"
            )
        if key in POSITIVE and not out[key] > 0:
            raise ValueError(f"setting {key!r} must be positive, got {out[key]}")
        low, high = RANGES.get(key, (out[key], out[key]))
        if not low <= out[key] <= high:
            raise ValueError(f"setting {key!r} must be between {low} and {high}, got {out[key]}")
    return out


def read_file(path: str | Path) -> dict[str, Any]:
    """The settings in a TOML (.toml) or JSON file; ValueError naming the file and line if it does not parse."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read config file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {p} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = str(
            exc
        )  # "... (at line N, column M)", or "... (at end of document)": name the last line then
        last = len(text.splitlines()) or 1
        where = where.replace("(at end of document)", f"(at end of document, line {last})")
        raise ValueError(f"config file {p} is not valid TOML: {where}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"config file {p} is not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {p} must hold an object of settings, not {type(data).__name__}")
    return data


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    cfg = Config()
    if path:
        data = read_file(path)
        try:
            cfg = cfg.with_overrides(**data)
        except ValueError as exc:
            raise ValueError(f"config file {path}: {exc}") from None
    env = os.environ if env is None else env
    from_env = {
        name: env[ENV_PREFIX + name.upper()]
        for name in Config.field_names()
        if ENV_PREFIX + name.upper() in env
    }
    try:
        cfg = cfg.with_overrides(**from_env)
    except ValueError as exc:
        raise ValueError(f"environment ({ENV_PREFIX}*): {exc}") from None
    return cfg.with_overrides(**overrides)
