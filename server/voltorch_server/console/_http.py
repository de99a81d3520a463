"""The console's HTTP surface: static assets, the JSON API, server-sent event streams, auth, errors.

Domain errors become HTTP statuses here, in one place (as `servicers/_status.py` does for gRPC); an
unexpected exception is a 500 with an error id that is in the server log, never a stack trace.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import errors as e
from .._ids import new_id
from ..auth import allowed, role_of
from . import _sse
from ._api import ROUTES, Query, Request, Route
from ._json import dumps

log = logging.getLogger("voltorch.console")

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024

_STATUS: list[tuple[type[e.VoltorchError], HTTPStatus]] = [
    (e.InvalidArgument, HTTPStatus.BAD_REQUEST),
    (e.NotFound, HTTPStatus.NOT_FOUND),
    (e.AlreadyExists, HTTPStatus.CONFLICT),
    (e.FailedPrecondition, HTTPStatus.CONFLICT),
    (e.OutOfRange, HTTPStatus.GONE),
    (e.ResourceExhausted, HTTPStatus.TOO_MANY_REQUESTS),
    (e.Aborted, HTTPStatus.CONFLICT),
    (e.Unavailable, HTTPStatus.SERVICE_UNAVAILABLE),
    (e.DeadlineExceeded, HTTPStatus.GATEWAY_TIMEOUT),
    (e.Unauthenticated, HTTPStatus.UNAUTHORIZED),
    (e.PermissionDenied, HTTPStatus.FORBIDDEN),
    (e.Unimplemented, HTTPStatus.NOT_IMPLEMENTED),
]


def http_status(exc: BaseException) -> HTTPStatus:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, e.VoltorchError) and http_status(exc) != HTTPStatus.INTERNAL_SERVER_ERROR:
        body: dict[str, Any] = {"message": exc.message, "reason": exc.reason, "metadata": exc.metadata}
        if isinstance(exc, e.InvalidArgument):
            body["field_violations"] = [
                {"field": v.field, "description": v.description} for v in exc.violations
            ]
        return {"error": body}
    error_id = new_id("err")
    log.error("console internal error %s", error_id, exc_info=exc)
    return {
        "error": {
            "message": f"internal error (id {error_id}); the server log has the details",
            "reason": "INTERNAL",
            "metadata": {"error_id": error_id},
        }
    }


@functools.cache
def _asset(name: str) -> tuple[bytes, str, str] | None:
    """An asset's bytes, content type and ETag, read once (they ship with the package)."""
    file = (STATIC / name).resolve()
    if not file.is_relative_to(STATIC) or not file.is_file():
        return None
    data = file.read_bytes()
    kind = (
        "text/javascript"
        if file.suffix == ".js"
        else mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    )
    if kind.startswith("text/"):
        kind += "; charset=utf-8"
    return data, kind, f'"{hashlib.sha256(data).hexdigest()[:16]}"'


class ConsoleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # an open event stream never holds up the process
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], runtime: Any, tokens: dict[str, str]):
        super().__init__(address, Handler)
        self.runtime = runtime
        self.tokens = tokens
        self.stopping = threading.Event()
        self.streams = _Count()


class _Count:
    """Open event streams, so stopping can wait (bounded) for them to end before the database closes."""

    def __init__(self) -> None:
        self._n = 0
        self._cond = threading.Condition()

    def __enter__(self) -> None:
        with self._cond:
            self._n += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._n -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._n == 0, timeout)


class Handler(BaseHTTPRequestHandler):
    server: ConsoleHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "voltorch-console"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- dispatch -------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # Methods the console has no use for: a JSON 405 with Allow, not http.server's HTML 501 page.
    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_TRACE(self) -> None:
        self._dispatch("TRACE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        if not url.path.startswith("/api/"):
            if method != "GET":
                self._not_allowed(method, url.path, "GET")
                return
            self._static(url.path)
            return
        route, params = self._match(method, url.path)
        if route is None:
            allow = sorted({r.method for r in ROUTES if r.pattern.match(url.path)})
            if allow:
                self._not_allowed(method, url.path, ", ".join(allow))
                return
            message = f"no console API route {method} {url.path}"
            self._json(HTTPStatus.NOT_FOUND, {"error": {"message": message, "reason": "NOT_FOUND"}})
            return
        try:
            role = self._role()
            if not route.public:
                self._authorize(role, route)
            query = Query(url.query)
            unknown = sorted(query.names() - route.query)
            if unknown:
                known = ", ".join(sorted(route.query)) or "none"
                raise e.InvalidArgument(unknown[0], f"is not a parameter of {url.path} (known: {known})")
            request = Request(
                runtime=self.server.runtime,
                params=params,
                query=query,
                body=self._body() if method == "POST" else {},
                last_event_id=self._last_event_id(),
                role=role,
                auth=bool(self.server.tokens),
            )
            if route.stream:
                follower, stop = route.handler(request)
                self._stream(follower, stop)
                return
            self._json(HTTPStatus.OK, route.handler(request))
        except Exception as exc:
            self._json(http_status(exc), error_body(exc))

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in ROUTES:
            if route.method == method:
                m = route.pattern.match(path)
                if m:
                    return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None, {}

    def _role(self) -> str | None:
        """The caller's role; with no tokens configured everyone is admin (the local default)."""
        tokens = self.server.tokens
        return role_of(tokens, self.headers.get("Authorization", "")) if tokens else "admin"

    def _authorize(self, role: str | None, route: Route) -> None:
        if role is None:
            raise e.Unauthenticated("a valid bearer token is required (Authorization: Bearer <token>)")
        if not allowed(role, route.rpc):
            raise e.PermissionDenied(f"role {role!r} may not call {route.rpc}")

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the unread body would be taken for the next request
            raise e.InvalidArgument("body", f"at most {MAX_BODY} bytes, with a valid Content-Length")
        raw = self.rfile.read(length) if length else b""
        # A JSON content type is not one a cross-site form or no-cors fetch may send without a CORS
        # preflight (which this server never grants): another site cannot steer workflows through the
        # visitor's browser, even on a server without tokens.
        if self.headers.get_content_type() != "application/json":
            raise e.InvalidArgument("Content-Type", "must be application/json")
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc != self.headers.get("Host"):
            raise e.PermissionDenied(f"cross-origin request from {origin} refused")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise e.InvalidArgument("body", "must be a JSON object") from None
        if not isinstance(data, dict):
            raise e.InvalidArgument("body", "must be a JSON object")
        return data

    def _last_event_id(self) -> int | None:
        raw = self.headers.get("Last-Event-ID") or Query(urlsplit(self.path).query).str("after")
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise e.InvalidArgument("Last-Event-ID", f"must be an event sequence (got {raw!r})") from None
        if value < 0:
            raise e.InvalidArgument("Last-Event-ID", "must not be negative")
        return value

    # -- responses ------------------------------------------------------------------------------------

    def _not_allowed(self, method: str, path: str, allow: str) -> None:
        self.close_connection = True  # a body sent with the method is left unread
        message = f"{path} does not take {method} (allowed: {allow})"
        self._json(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": {"message": message, "reason": "METHOD_NOT_ALLOWED"}},
            headers={"Allow": allow},
        )

    def _json(self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> None:
        data = dumps(body)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, follower: Any, stop: Any) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        with self.server.streams:
            try:
                _sse.stream(self.wfile, follower, self.server.stopping, stop=stop)
            except Exception:
                # Headers are sent: no JSON error can follow. The client reconnects from its last id.
                log.exception("console event stream failed")

    def _static(self, path: str) -> None:
        asset = _asset("index.html" if path in ("", "/") else path.lstrip("/"))
        if asset is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": {"message": f"no asset {path}"}})
            return
        data, kind, etag = asset
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", etag)
        self.send_header("Cache-Control", "no-cache")  # revalidated: a new version is seen at once
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
        self.end_headers()
        self.wfile.write(data)
