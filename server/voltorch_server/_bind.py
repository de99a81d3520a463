"""Binding the listening address, with one-line StartupErrors instead of grpcio's bare RuntimeError.

grpcio says only "Failed to bind to address" (and logs the reason from its C core), so the address is
first checked here: a host that does not resolve and a port already in use each get their own message.
"""

from __future__ import annotations

import errno
import socket

import grpc

from .errors import StartupError


def check_address(host: str, port: int) -> None:
    """Raise StartupError if `host` does not resolve or `port` is taken on it (port 0 is always free)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StartupError(f"--host {host!r} does not resolve: {reason}") from None
    if port == 0:
        return
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as grpcio does: TIME_WAIT is no conflict
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {port} on {host} is in use by another process; choose another --port (0 = any free port)"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def bind(server: grpc.Server, host: str, port: int, credentials: grpc.ServerCredentials | None) -> int:
    """Add the listening port; returns the bound port number."""
    check_address(host, port)
    address = f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise StartupError(f"cannot listen on {address}")
    return bound
