"""A client interceptor that adds metadata to every call: the bearer token on a plaintext channel and the
caller's trace context both use it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

Metadata = Sequence[tuple[str, str]]


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Appends extra() to each call's metadata (nothing is copied when it returns nothing)."""

    def __init__(self, extra: Callable[[], Metadata]):
        self._extra = extra

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        extra = self._extra()
        if not extra:
            return details
        return _Details(details, [*(details.metadata or ()), *extra])

    def intercept_unary_unary(
        self, continuation: Callable, details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable, details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable, details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable, details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)


class _Details(grpc.ClientCallDetails):
    """The call's details with other metadata, built on grpc's public ClientCallDetails interface (grpc's
    own details object is an implementation detail)."""

    def __init__(self, d: grpc.ClientCallDetails, metadata: list[tuple[str, str]]):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)
