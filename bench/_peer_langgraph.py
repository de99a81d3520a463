"""LangGraph as its users run it, for the workflows suite's peer rows: a linear graph of no-op steps,
checkpointed by `SqliteSaver` to a file after every step (durability="sync": a step's checkpoint is
written before the next step starts), invoked in this process.

SQLite runs at its default `synchronous=FULL` here (SqliteSaver sets WAL and nothing else); the suite runs
the voltorch server with `db_synchronous=FULL` beside it, so both sync the same way.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict


class _State(TypedDict):
    done: int


def _step(state: _State) -> dict[str, int]:
    return {"done": state["done"] + 1}


class Chain:
    """A compiled `steps`-step linear graph with a SqliteSaver on a file in `directory`."""

    def __init__(self, steps: int, directory: str):
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph

        self.steps = steps
        self._conn = sqlite3.connect(
            os.path.join(directory, f"langgraph-{steps}.sqlite"), check_same_thread=False
        )
        saver = SqliteSaver(self._conn)
        g = StateGraph(_State)
        names = [f"s{i}" for i in range(steps)]
        for n in names:
            g.add_node(n, _step)
        g.add_edge(START, names[0])
        for a, b in zip(names, names[1:], strict=False):
            g.add_edge(a, b)
        g.add_edge(names[-1], END)
        self._graph = g.compile(checkpointer=saver)

    def run(self) -> None:
        """One workflow, start to finish, in a thread of its own (a new thread_id)."""
        config: Any = {"configurable": {"thread_id": uuid.uuid4().hex}}
        out = self._graph.invoke({"done": 0}, config, durability="sync")
        if out["done"] != self.steps:
            raise RuntimeError(f"langgraph ran {out['done']} of {self.steps} steps")

    def close(self) -> None:
        self._conn.close()


def sequential(run: Any, n: int) -> tuple[float, list[int]]:
    """(wall seconds, per-run ns) of `n` runs one after another."""
    lat = []
    began = time.perf_counter()
    for _ in range(n):
        a = time.perf_counter_ns()
        run()
        lat.append(time.perf_counter_ns() - a)
    return time.perf_counter() - began, lat


def concurrent(run: Any, n: int) -> tuple[float, list[int]]:
    """(wall seconds, per-run ns) of `n` runs started at once, each on its own thread."""

    def timed(_: int) -> int:
        a = time.perf_counter_ns()
        run()
        return time.perf_counter_ns() - a

    with ThreadPoolExecutor(n) as pool:
        began = time.perf_counter()
        lat = list(pool.map(timed, range(n)))
        wall = time.perf_counter() - began
    return wall, lat
