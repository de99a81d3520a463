"""The step graph of a template: edges (explicit depends_on plus the implicit edges of condition
branches), cycle detection and ancestry, computed once per template."""

from __future__ import annotations

from dataclasses import dataclass

from ._model import ConditionSpec, StepSpec


@dataclass(frozen=True)
class Graph:
    order: tuple[str, ...]  # template order
    deps: dict[str, tuple[str, ...]]  # step -> the steps it waits for (explicit + implicit)
    dependents: dict[str, tuple[str, ...]]
    # step -> [(condition step id, "then" | "else")] for steps listed in a condition's branches
    branches: dict[str, tuple[tuple[str, str], ...]]
    # every step after all the steps it waits for in `order`: one pass in that order starts whatever the
    # steps before it made ready (the workflow's `advance`)
    topological: bool = False

    def sinks(self) -> list[str]:
        """Steps nobody depends on, in template order."""
        return [s for s in self.order if not self.dependents[s]]

    def ancestors(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.deps[step_id])
        while stack:
            s = stack.pop()
            if s not in seen:
                seen.add(s)
                stack.extend(self.deps[s])
        return seen


def build(steps: tuple[StepSpec, ...]) -> Graph:
    """The graph of already id-checked steps; unknown ids in depends_on/branches are ignored here."""
    ids = [s.id for s in steps]
    known = set(ids)
    deps: dict[str, list[str]] = {s.id: [d for d in s.depends_on if d in known] for s in steps}
    branches: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for s in steps:
        if isinstance(s.kind, ConditionSpec):
            for branch, targets in (("then", s.kind.then_steps), ("else", s.kind.else_steps)):
                for t in targets:
                    if t in known and t != s.id:
                        branches[t].append((s.id, branch))
                        if s.id not in deps[t]:
                            deps[t].append(s.id)
    dependents: dict[str, list[str]] = {i: [] for i in ids}
    for step_id, ds in deps.items():
        for d in ds:
            dependents[d].append(step_id)
    at = {s: i for i, s in enumerate(ids)}
    return Graph(
        order=tuple(ids),
        deps={k: tuple(v) for k, v in deps.items()},
        dependents={k: tuple(v) for k, v in dependents.items()},
        branches={k: tuple(v) for k, v in branches.items()},
        topological=all(at[d] < at[s] for s, ds in deps.items() for d in ds),
    )


def find_cycle(graph: Graph) -> list[str] | None:
    """One dependency cycle as a path [a, b, ..., a], or None when the graph is acyclic."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph.order, white)
    parent: dict[str, str] = {}
    for root in graph.order:
        if color[root] != white:
            continue
        stack = [(root, iter(graph.deps[root]))]
        color[root] = grey
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = black
                stack.pop()
                continue
            if color[nxt] == grey:
                path = [nxt, node]
                while path[-1] != nxt:
                    path.append(parent[path[-1]])
                return list(reversed(path))
            if color[nxt] == white:
                color[nxt] = grey
                parent[nxt] = node
                stack.append((nxt, iter(graph.deps[nxt])))
    return None
