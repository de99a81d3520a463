"""The web console: workflows, agents, events and the system, live in a browser.

An adapter like the servicers: it serves static assets (plain ES modules, no build step) and a JSON +
server-sent-events API that calls the components directly, from the server's own process, on the same
host as gRPC and with the same bearer tokens and roles.
"""

from __future__ import annotations

import threading
from typing import Any

from ._http import ConsoleHTTPServer

__all__ = ["Console"]


class Console:
    """`start()`, then `url`, then `stop()`."""

    def __init__(self, runtime: Any, host: str, port: int, tokens: dict[str, str]):
        self._http = ConsoleHTTPServer((host, port), runtime, tokens)
        self.host = host
        self.port: int = self._http.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> Console:
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.25}, name="console", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and end open event streams (clients reconnect and resume)."""
        self._http.stopping.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=5.0)
        self._http.server_close()
        self._http.streams.wait_idle(timeout=2.0)  # each notices `stopping` within _sse.POLL_SECONDS
