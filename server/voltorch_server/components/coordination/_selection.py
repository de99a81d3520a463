"""Choosing an agent for a task when none is named: capabilities must match; among the matches prefer a
higher success rate, a lower latency and a lower load; never an agent at its max concurrency.

score = 0.5 * success_rate + 0.2 * latency_score + 0.3 * free_capacity, where latency_score is the
fastest candidate's average latency divided by this one's (1.0 without history) and free_capacity is
1 - load / max_concurrency. Ties go to the agent dispatched least recently, so equal agents share work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from operator import attrgetter, is_, itemgetter

from ...frozen import made, replaced
from ._model import Candidate, Selection

W_SUCCESS, W_LATENCY, W_LOAD = 0.5, 0.2, 0.3
MAX_LISTED = 20
_FLOOR = 0.001  # seconds: latencies below this count as this


@dataclass(frozen=True)
class AgentView:
    """What selection needs to know about one agent, read under the engine lock."""

    id: str
    capabilities: frozenset[str]
    status: str
    load: int
    max_concurrency: int
    success_rate: float
    avg_latency: float
    last_dispatch: float


_first = itemgetter(0)
_entry = itemgetter(1, 2)  # (candidate, view) of a (sort key, candidate, view)
_reason = attrgetter("reason")
_eligible = attrgetter("eligible")
_MISSING = "missing capability"
_TAKING = ("idle", "busy")  # the statuses _ineligible_reason lets through


def view_of(
    id: str,
    capabilities: frozenset[str],
    status: str,
    load: int,
    max_concurrency: int,
    success_rate: float,
    avg_latency: float,
    last_dispatch: float,
) -> AgentView:
    """AgentView(...) without the frozen dataclass's __init__ (an object.__setattr__ per field): a dispatch
    views every registered agent, a step's dispatch ~7 of them. The same object the constructor makes."""
    v = made(
        AgentView,
        id=id,
        capabilities=capabilities,
        status=status,
        load=load,
        max_concurrency=max_concurrency,
        success_rate=success_rate,
        avg_latency=avg_latency,
        last_dispatch=last_dispatch,
    )
    return v


def _candidate(
    agent_id: str,
    score: float,
    success_rate: float,
    avg_latency: float,
    current_load: int,
    max_concurrency: int,
    eligible: bool,
    reason: str,
) -> Candidate:
    """Candidate(...) as view_of() builds an AgentView: every agent is one on every dispatch."""
    c = made(
        Candidate,
        agent_id=agent_id,
        score=score,
        success_rate=success_rate,
        avg_latency=avg_latency,
        current_load=current_load,
        max_concurrency=max_concurrency,
        eligible=eligible,
        reason=reason,
    )
    return c


@lru_cache(maxsize=1024)
def _missing(capabilities: frozenset[str], required: tuple[str, ...]) -> str:
    """What an agent with `capabilities` lacks of `required`, as its reason ("" for nothing): the same
    agents are told the same on every dispatch."""
    missing = [c for c in required if c not in capabilities]
    return "missing capability: " + ", ".join(missing) if missing else ""


def _ineligible_reason(
    a: AgentView, required: tuple[str, ...], exclude: Iterable[str], why_excluded: str
) -> str:
    missing = _missing(a.capabilities, required)
    if missing:
        return missing
    if a.id in exclude:
        return why_excluded
    if a.status == "offline":
        return "offline"
    if a.status == "elsewhere":
        return "connected to another replica, and an agent here can take the task"
    if a.status == "error":
        return "in error state after repeated failures"
    if a.load >= a.max_concurrency:
        return f"at max concurrency ({a.max_concurrency})"
    return ""


def rank(
    agents: Iterable[AgentView],
    required: tuple[str, ...],
    exclude: frozenset[str] = frozenset(),
    why_excluded: str = "already takes part in this coordination",
) -> list[tuple[Candidate, AgentView]]:
    """Every agent as a candidate, eligible ones first, best score first."""
    needs = frozenset(required)
    views: list[tuple[AgentView, str]] = []
    lacking: list[AgentView] = []  # the agents without `required`: most of them, the same from step to step
    fastest: float | None = None  # the lowest average latency (at least _FLOOR) among the eligible
    for a in agents:
        if not needs <= a.capabilities:
            lacking.append(a)
        # An agent that can take it is told apart without _ineligible_reason's checks one by one.
        elif a.status in _TAKING and a.load < a.max_concurrency and a.id not in exclude:
            views.append((a, ""))
            lat = a.avg_latency
            if lat > 0:
                lat = max(lat, _FLOOR)
                if fastest is None or lat < fastest:
                    fastest = lat
        else:
            views.append((a, _ineligible_reason(a, required, exclude, why_excluded)))
    if fastest is None:
        fastest = _FLOOR
    out = [_ranked(a, why, fastest) for a, why in views]
    if lacking:
        out += _lacking(lacking, required, fastest)
    out.sort(key=_first)
    return list(map(_entry, out))


def _ranked(a: AgentView, why: str, fastest: float) -> tuple[tuple, Candidate, AgentView]:
    """(sort key, candidate, view) of one agent."""
    lat = a.avg_latency
    # A view is frozen and kept by its agent while nothing it shows changes (AgentState.view): its candidate
    # (frozen too) is the same while its reason and, when its latency counts, the fastest are the same.
    kept = a.__dict__.get("_ranked")
    if kept is not None and kept[0] == why and (lat <= 0 or kept[1] == fastest):
        return kept[2], kept[3], a
    load, most, rate = a.load, a.max_concurrency, a.success_rate
    lat_score = 1.0 if lat <= 0 else fastest / max(lat, _FLOOR)
    free = max(0.0, 1.0 - load / max(1, most))
    score = round(W_SUCCESS * rate + W_LATENCY * lat_score + W_LOAD * free, 4)
    # as _candidate() makes it, without the call
    cand = made(
        Candidate,
        agent_id=a.id,
        score=score,
        success_rate=rate,
        avg_latency=lat,
        current_load=load,
        max_concurrency=most,
        eligible=not why,
        reason=why or "eligible",
    )
    order = (bool(why), -score, a.last_dispatch, a.id)
    a.__dict__["_ranked"] = (why, fastest, order, cand)  # beside its fields: not one (eq, repr, replace)
    return order, cand, a


# Per capabilities asked for: the views of the agents without them last ranked (the very objects), the
# fastest their scores were made with (None: none has a latency, it did not count) and their entries.
_LACKING: dict[tuple[str, ...], tuple[list[AgentView], float | None, list[tuple]]] = {}
_LACKING_MAX = 256  # sets of capabilities remembered (then forgotten all at once)


def _lacking(lacking: list[AgentView], required: tuple[str, ...], fastest: float) -> list[tuple]:
    """The entries of agents that lack `required` (their reason says which ones, whatever else is true of
    them), made again only when one of their views is new (an agent changed, came or went) or, for one
    with a latency, the fastest eligible agent's changed. The same entries `_ranked` makes, by the same
    objects: a step's dispatch ranks every registered agent, and most lack what the step asks for."""
    last = _LACKING.get(required)
    if (
        last is not None
        and (last[1] is None or last[1] == fastest)
        and len(last[0]) == len(lacking)
        and all(map(is_, last[0], lacking))
    ):
        return last[2]
    entries = [_ranked(a, _missing(a.capabilities, required), fastest) for a in lacking]
    timed = False
    for a in lacking:  # a loop: a generator left unfinished is closed by an exception
        if a.avg_latency > 0:
            timed = True
            break
    if len(_LACKING) >= _LACKING_MAX:
        _LACKING.clear()
    _LACKING[required] = (lacking, fastest if timed else None, entries)
    return entries


def choose(
    ranked: list[tuple[Candidate, AgentView]], required: tuple[str, ...]
) -> tuple[AgentView | None, Selection]:
    """The best eligible agent (or None) and the explanation to record."""
    if not ranked or not ranked[0][0].eligible:
        capable = [c for c, _ in ranked if not c.reason.startswith("missing capability")]
        return None, Selection(
            (),
            tuple(c for c, _ in ranked[:MAX_LISTED]),
            f"no eligible agent among {len(capable)} capable of {len(ranked)} registered; waiting in the queue",
        )
    best_c, best = ranked[0]
    selected = replaced(best_c, reason="selected: best score")
    cands = [selected, *map(_first, ranked[1:MAX_LISTED])]
    # counted by C loops (a step's dispatch chooses among every registered agent)
    n_eligible = sum(map(_eligible, map(_first, ranked)))
    n_capable = len(ranked) - sum(map(str.startswith, map(_reason, map(_first, ranked)), repeat(_MISSING)))
    needs = f"with {', '.join(required)}" if required else "(any capability)"
    runner = ""
    if n_eligible > 1:
        second = ranked[1][0]
        runner = f"; next best {second.agent_id} ({second.score:.3f})"
    explanation = (
        f"selected {best.id} (score {best_c.score:.3f}: success {best.success_rate:.2f}, "
        f"load {best.load}/{best.max_concurrency}, avg latency {best.avg_latency * 1000:.0f} ms) "
        f"among {n_eligible} eligible of {n_capable} agents {needs}{runner}"
    )
    return best, Selection((best.id,), tuple(cands), explanation)
