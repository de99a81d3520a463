"""One asyncio event loop, on its own thread, for the LLM agents' HTTP calls.

With ~128 calls in flight, each on the agent's own pool thread with a blocking client, every piece of an
answer that arrives wakes one of ~128 threads, which then races the others for the GIL. On one loop
thread the reads are callbacks of one thread; an agent's thread blocks once per attempt, on the
`concurrent.futures.Future` of its call (and wakes for its live text, llm.py).

The loop's thread starts when its first user attaches and stops when the last one detaches (each LLM agent
that made clients is one user; it closes them on the loop, then detaches): a server that stops leaves no
thread behind. Stopping cancels the calls still running, so no agent waits on a call that never ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

STOP_TIMEOUT = 5.0  # seconds a stop waits for the loop's thread to end


class LlmLoop:
    """An event loop on a thread of its own while it has users (`attach()` / `detach()`)."""

    def __init__(self, name: str = "voltorch-llm-loop"):
        self.name = name
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def attach(self) -> None:
        """One more user; the first starts the loop's thread."""
        with self._lock:
            self._users += 1
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(target=_run, args=(loop, started), name=self.name, daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread

    def detach(self) -> None:
        """One user fewer; the last stops the loop (its calls still running are cancelled) and its thread."""
        with self._lock:
            if self._users <= 0:
                raise RuntimeError("LlmLoop.detach() without attach()")
            self._users -= 1
            if self._users:
                return
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            asyncio.run_coroutine_threadsafe(_stop(loop), loop)
            if thread is not threading.current_thread():
                thread.join(STOP_TIMEOUT)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coro` on the loop; its future (cancelling it cancels the coroutine's task)."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("LlmLoop.submit() with no user attached")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def tasks(self) -> int:
        """Tasks running on the loop (0 when it is stopped)."""
        loop = self._loop
        if loop is None:
            return 0
        return asyncio.run_coroutine_threadsafe(_count(), loop).result(STOP_TIMEOUT) - 1  # not _count's own


def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _stop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every other task, wait for them to unwind (their `finally`s close responses), stop."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    for t in others:
        t.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    loop.stop()


async def _count() -> int:
    return len(asyncio.all_tasks())
