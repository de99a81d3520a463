"""The CPUs the server runs on: the `cpu_affinity` setting.

A CPython process runs Python on one core at a time (the GIL). Spread over several cores, the server's
threads pass the GIL to each other across cores: a thread that releases it for a short C call (a SQLite
statement, a gRPC send) wakes a thread on another core and must then wait for that one to give it back,
at two context switches and an inter-processor wake-up each time. On one core the thread that released
the GIL takes it back before the thread it woke has run. Measured on 2 cores (bench/README.md, "One
core"): a third less server CPU per workflow step and per published event, context switches per step
42 -> 14, and the publish -> deliver p99 five times lower.

`auto` (the default) confines the server to one of the CPUs it may use (the one it is running on as it
starts, so the kernel's choice of an idle one stands); `all` leaves it where the operating system puts
it; a list ("3", "0,2", "4-7") confines it to those. A confined process is one the kernel cannot move, so
with `auto` a Mover thread moves it off a CPU that other work keeps busy. Servers one launcher starts
together get one CPU each in turn (spread). Processes the server starts inherit the confinement on Linux;
its LLM call process frees itself again (child_env, free_child).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable

AUTO = "auto"
ALL = "all"
MAX_CPUS = 4096  # the highest CPU number a list may name, + 1
_CHILD_ENV = "_VOLTORCH_CHILD_CPUS"  # the CPUs the server had before it confined itself, for its children
_before: frozenset[int] | None = None  # those CPUs, once confine() ran: handed to the LLM call process only


def parse(text: str) -> str | frozenset[int]:
    """`auto`, `all`, or the CPUs of a list such as "0,2-3"; ValueError naming what is wrong."""
    value = text.strip().lower()
    if value in (AUTO, ALL):
        return value
    cpus: set[int] = set()
    for part in value.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ValueError(
                f"setting 'cpu_affinity' must be auto, all or CPU numbers such as 0,2-3, got {text!r}"
            ) from None
        if first < 0 or last < first or last >= MAX_CPUS:
            raise ValueError(f"setting 'cpu_affinity': {part.strip()!r} is not a range of CPU numbers")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def supported() -> bool:
    return hasattr(os, "sched_setaffinity")


def allowed() -> frozenset[int]:
    """The CPUs this process may run on now."""
    return frozenset(os.sched_getaffinity(0)) if supported() else frozenset()


def plan(setting: str) -> frozenset[int] | None:
    """The CPUs `setting` confines this process to, or None to leave it as it is. ValueError for CPUs it
    may not use, or a list on a platform that cannot confine a process."""
    wanted = parse(setting)
    if wanted == ALL:
        return None
    if not supported():
        if wanted == AUTO:
            return None
        raise ValueError(
            "setting 'cpu_affinity': this platform cannot confine a process to CPUs (use auto or all)"
        )
    mine = allowed()
    if wanted == AUTO:
        return frozenset({_current_cpu(mine)}) if len(mine) > 1 else None
    assert isinstance(wanted, frozenset)
    outside = sorted(wanted - mine)
    if outside:
        raise ValueError(
            f"setting 'cpu_affinity': CPU {cpu_list(outside)} is not one this process may run on"
            f" (it may use {cpu_list(mine)})"
        )
    return wanted


def spread(i: int) -> str:
    """The cpu_affinity of the i-th of several servers one launcher starts on this host: one CPU each in
    turn among those this process may use (`auto` would leave where they land, maybe all on one, to the
    kernel's placement at their start); `all` where this process cannot confine one."""
    mine = sorted(allowed())
    return str(mine[i % len(mine)]) if mine else ALL


def confine(cpus: Iterable[int]) -> None:
    """Confine every thread of this process (those running now and, by inheritance, those it starts) to
    `cpus`; the CPUs it had are kept for the LLM call process (child_env, free_child), not put in
    os.environ where every child would inherit them."""
    global _before
    before = allowed()
    target = set(cpus)
    os.sched_setaffinity(0, target)  # this thread first: the threads it starts inherit it
    if _before is None:
        _before = before
    done: set[int] = set()
    while True:  # a thread started during the pass inherits from its (maybe not yet confined) parent
        try:
            tids = {int(t) for t in os.listdir("/proc/self/task")} - done
        except OSError:
            return  # no /proc (a sandbox, not Linux): this thread and those it starts are confined
        if not tids:
            return
        for tid in tids:
            try:
                os.sched_setaffinity(tid, target)
            except ProcessLookupError:
                pass  # it has ended
        done |= tids


def child_env() -> dict[str, str]:
    """For the LLM call process's environment: the CPUs this process had before confine() (none: {})."""
    return {} if _before is None else {_CHILD_ENV: ",".join(map(str, sorted(_before)))}


def free_child() -> None:
    """In a process the server started: run on the CPUs the server had before it confined itself."""
    text = os.environ.pop(_CHILD_ENV, "")
    if text and supported():
        try:
            os.sched_setaffinity(0, {int(c) for c in text.split(",")})
        except (OSError, ValueError):
            pass  # the CPUs it may use changed meanwhile: stay where it is


def apply(setting: str, recheck: float = 0.0) -> str:
    """Confine this process as `setting` says (see plan); returns where it now runs, for the log. With
    `auto` and `recheck` > 0, a thread looks every `recheck` seconds whether other work keeps the chosen
    CPU busy and moves the process to an idler one (Mover): the kernel cannot move a confined process."""
    before = allowed()
    cpus = plan(setting)
    if cpus is None:
        return f"on CPUs {cpu_list(before)} (cpu_affinity={setting})" if before else "on any CPU"
    confine(cpus)
    if parse(setting) == AUTO and recheck > 0 and os.path.exists("/proc/stat"):
        Mover(next(iter(cpus)), before, recheck).start()
    return f"on CPU {cpu_list(cpus)} of {cpu_list(before)} (cpu_affinity={setting})"


BUSY_OTHERS = 0.5  # others' share of the process's CPU above which it looks for an idler one
MARGIN = 0.25  # ... which must be idler than that by this much (so two processes do not chase each other)


def choose(current: int, others_busy: float, busy: dict[int, float]) -> int | None:
    """The CPU to move to, or None to stay: `others_busy` is the share of `current` that other work took
    in the last interval; `busy[c]` the share of each other CPU that was busy (anything's work)."""
    if others_busy <= BUSY_OTHERS or not busy:
        return None
    best = min(busy, key=lambda c: (busy[c], c))
    return best if busy[best] < others_busy - MARGIN else None


class Mover(threading.Thread):
    """Moves an `auto`-confined process off a CPU that other work keeps busy (two looks in a row), to the
    idlest of those it may use."""

    def __init__(self, cpu: int, choices: frozenset[int], interval: float) -> None:
        super().__init__(name="cpu-mover", daemon=True)
        self.cpu, self.choices, self.interval = cpu, choices, interval
        self.moved = False
        self._log = logging.getLogger("voltorch")

    def run(self) -> None:
        last, wanted = _sample(), None
        while True:
            time.sleep(self.interval)  # the interval between looks; nothing waits on this thread
            now = _sample()
            if last is None or now is None:
                last, wanted = now, None  # /proc unreadable this time (EMFILE, say): look again next time
                continue
            target = self._look(last, now)
            last = now
            if target is None or target != wanted:
                wanted = target  # the same answer twice in a row before moving
                if self.moved and not self._confine(self.cpu):
                    self.moved = False  # its CPU was taken away: where the kernel put it stands
                continue
            wanted = None
            if not self._confine(target):
                self.choices -= {target}  # not one it may use now (offline, the cpuset shrank)
                continue
            self._log.info("moved to CPU %d: other work kept CPU %d busy", target, self.cpu)
            self.cpu, self.moved = target, True

    def _confine(self, cpu: int) -> bool:
        """confine() to `cpu`; False (logged) when the kernel refuses it: the thread must not end."""
        try:
            confine({cpu})
        except OSError as exc:
            self._log.warning("cpu_affinity: cannot move to CPU %d (%s); staying", cpu, exc)
            return False
        return True

    def _look(self, last: _Sample, now: _Sample) -> int | None:
        ours = now.ours - last.ours
        spent = {
            c: (now.busy[c] - last.busy.get(c, 0), now.total[c] - last.total.get(c, 0)) for c in now.busy
        }
        mine, total = spent.get(self.cpu, (0, 0))
        if total <= 0:
            return None
        others = max(mine - ours, 0) / total
        busy = {c: b / t for c, (b, t) in spent.items() if c in self.choices and c != self.cpu and t > 0}
        return choose(self.cpu, others, busy)


class _Sample:
    def __init__(self, busy: dict[int, int], total: dict[int, int], ours: int) -> None:
        self.busy, self.total, self.ours = busy, total, ours


def _sample() -> _Sample | None:
    """Per-CPU busy and total time, and this process's CPU time, in clock ticks (from /proc)."""
    try:
        busy, total = {}, {}
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name != "cpu":
                    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                    busy[int(name[3:])] = sum(ticks) - ticks[3] - ticks[4]
                    total[int(name[3:])] = sum(ticks)
        with open("/proc/self/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        return _Sample(busy, total, int(stat[11]) + int(stat[12]))  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def _current_cpu(mine: frozenset[int]) -> int:
    """The CPU this thread is running on (the kernel placed it on an idle one), else one picked by pid."""
    try:
        with open("/proc/thread-self/stat") as f:
            cpu = int(f.read().rsplit(")", 1)[1].split()[36])
        if cpu in mine:
            return cpu
    except (OSError, ValueError, IndexError):
        pass
    ordered = sorted(mine)
    return ordered[os.getpid() % len(ordered)]


def cpu_list(cpus: Iterable[int]) -> str:
    """ "0-3,6" for {0, 1, 2, 3, 6}."""
    out: list[str] = []
    for c in sorted(cpus):
        if out and out[-1].rpartition("-")[2] == str(c - 1):
            out[-1] = f"{out[-1].partition('-')[0]}-{c}"
        else:
            out.append(str(c))
    return ",".join(out)
