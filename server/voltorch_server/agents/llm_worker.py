"""The LLM call process (see llm_process.py): reads call and cancel frames on stdin, runs each call on a
thread of its own through InProcessCalls, writes its live text, its answer and its log records (warnings
and worse) as frames on stdout. Exits when stdin closes.

Run by the server as `python -m voltorch_server.agents.llm_worker`; not a command for users.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from .. import cpus

if __name__ == "__main__":
    cpus.free_child()  # first: the server's own CPU (cpu_affinity) is not for its calls, nor these imports

# Loaded as the process starts, not by its first call: the server starts this process ahead of its calls
# (ProcessCalls.warm) so that none waits for these imports, the `openai` client's most of all (the server's
# own modules import it lazily, see llm.py).
import openai  # noqa: F401

from ._values import CancelSignal
from .llm_clients import CallRequest, InProcessCalls
from .llm_process import describe_error, kept_headers, read_frame, write_frame

# Calls in flight are bounded by the server's limiters (llm_max_in_flight per endpoint); this only bounds
# the threads a misbehaving server could make the child start.
MAX_THREADS = 1024


class Worker:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.calls = InProcessCalls()
        self.pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="llm-call")
        self._write = threading.Lock()
        self._lock = threading.Lock()
        self._cancels: dict[int, CancelSignal] = {}

    def send(self, message: tuple[Any, ...]) -> None:
        with self._write:
            write_frame(self.out, message)

    def serve(self, inp: IO[bytes]) -> None:
        while (message := read_frame(inp)) is not None:
            kind, call_id = message[0], message[1]
            if kind == "call":
                cancel = CancelSignal()
                with self._lock:
                    self._cancels[call_id] = cancel
                self.pool.submit(self.run, call_id, message[2], cancel)
            elif kind == "cancel":
                with self._lock:
                    signal = self._cancels.get(call_id)
                if signal is not None:
                    signal.set(message[2])
        with self._lock:  # the server is gone: stop reading what nobody waits for
            for signal in self._cancels.values():
                signal.set("the server stopped")

    def run(self, call_id: int, request: CallRequest, cancel: CancelSignal) -> None:
        text = CallText(self, call_id)
        try:
            answer = self.calls.call(request, text, cancel)
            error = None if answer.error is None else describe_error(answer.error)
            reply = ("done", call_id, kept_headers(answer.headers), answer.reply, error, "".join(text.last))
        except BaseException as exc:  # every failure goes back to the waiting call
            reply = ("error", call_id, *describe_error(exc))
        finally:
            with self._lock:
                self._cancels.pop(call_id, None)
        try:
            self.send(reply)
        except (OSError, ValueError):
            pass  # the server is gone
        except Exception as exc:  # not picklable (a reply with odd values): say so instead
            failure = RuntimeError(f"the answer could not be sent back: {type(exc).__name__}: {exc}")
            self.send(("error", call_id, *describe_error(failure)))


class CallText:
    """A call's live text in the child (llm_stream.LiveText), as the server's AgentTask.delta takes it: each
    piece a frame at once, the last kept for the answer's frame."""

    __slots__ = ("worker", "call_id", "last")

    def __init__(self, worker: Worker, call_id: int) -> None:
        self.worker, self.call_id = worker, call_id
        self.last: list[str] = []

    def delta(self, text: str, *, last: bool = False) -> None:
        if not text:
            return
        if last:
            self.last.append(text)
        else:
            self.worker.send(("text", self.call_id, text))


class LogToServer(logging.Handler):
    """The child's log records as frames: the server logs them where its own go (its file, format and
    level), naming the child."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(logging.WARNING)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.worker.send(("log", 0, record.levelno, record.name, self.format(record)))
        except Exception:
            self.handleError(record)


def main() -> None:
    inp = os.fdopen(sys.stdin.fileno(), "rb", buffering=1 << 16)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=1 << 16)
    sys.stdout = sys.stderr  # nothing else may write to the frames' pipe
    worker = Worker(out)
    logging.root.addHandler(LogToServer(worker))
    logging.root.setLevel(logging.WARNING)
    code = 0
    try:
        worker.serve(inp)
    except BaseException:  # said to the server's log (while the pipe works), and by the exit code
        logging.getLogger("voltorch.agents.llm_worker").exception("the LLM call process failed")
        code = 1
    finally:
        worker.pool.shutdown(wait=False, cancel_futures=True)
        worker.calls.close()
        os._exit(code)  # call threads still reading a stream must not keep the process


if __name__ == "__main__":
    main()
