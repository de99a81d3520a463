"""The cpu_affinity=auto mover (cpus.Mover) keeps looking after a failed move or a failed look,
driven with made-up /proc samples (no real CPUs, no sleeping)."""

from __future__ import annotations

import errno

import pytest
from voltorch_server import cpus


class _Done(BaseException):
    """Ends Mover.run (which loops for ever) once the made-up samples are used up."""


def _busy_cpu0(ours: int) -> cpus._Sample:
    """A sample after which CPU 0 (ours) was 90 % others' and CPU 1 idle, 100 ticks each per look."""
    return cpus._Sample({0: ours * 100, 1: 0}, {0: ours * 100, 1: ours * 100}, ours * 10)


def _drive(monkeypatch: pytest.MonkeyPatch, samples: list, confine) -> cpus.Mover:
    it = iter(samples)

    def sample() -> cpus._Sample | None:
        try:
            return next(it)
        except StopIteration:
            raise _Done from None

    monkeypatch.setattr(cpus, "_sample", sample)
    monkeypatch.setattr(cpus, "confine", confine)
    monkeypatch.setattr(cpus.time, "sleep", lambda _s: None)
    mover = cpus.Mover(0, frozenset({0, 1}), 5.0)
    with pytest.raises(_Done):
        mover.run()
    return mover


def test_a_move_the_kernel_refuses_does_not_end_the_mover(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU it chose went offline, or the container's cpuset shrank, between the look and the move:
    sched_setaffinity fails with EINVAL. The OSError ended the mover's thread (a traceback on stderr,
    then no more looks for the life of the server)."""
    tried: list[set[int]] = []

    def confine(where) -> None:
        tried.append(set(where))
        raise OSError(errno.EINVAL, "Invalid argument")

    mover = _drive(monkeypatch, [_busy_cpu0(n) for n in range(8)], confine)
    assert mover.cpu == 0 and not mover.moved  # stayed where it was
    assert tried and tried[0] == {1}
    assert len(tried) == 1  # ... and does not try that CPU again every other look


def test_a_look_that_cannot_read_proc_once_does_not_end_the_mover(monkeypatch: pytest.MonkeyPatch) -> None:
    """One failed read of /proc/stat or /proc/self/stat (EMFILE on a server at its file limit, say) made
    run() return: the process stayed on a busy CPU for good."""
    moved: list[set[int]] = []
    samples = [_busy_cpu0(0), None, _busy_cpu0(1), _busy_cpu0(2), _busy_cpu0(3)]
    mover = _drive(monkeypatch, samples, lambda where: moved.append(set(where)))
    assert moved == [{1}] and mover.cpu == 1
