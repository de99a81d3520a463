"""Rebuild a gRPC method handler through grpc's public constructors (`grpc.*_rpc_method_handler`),
keeping its kind and (de)serializers: what the interceptors use to wrap or replace a method's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

_CONSTRUCTORS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def behaviour(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    """The function that serves the method, whatever its kind."""
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def rebuild(
    handler: grpc.RpcMethodHandler,
    fn: Callable[..., Any] | None = None,
    *,
    response_serializer: Callable[[Any], bytes] | None = None,
    raw_requests: bool = False,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler`, served by `fn` (default: the same function), with
    `response_serializer` if given (default: the same); with `raw_requests`, grpc hands `fn` the request
    bytes undecoded (no request deserializer: `fn` decodes them itself)."""
    build = _CONSTRUCTORS[(handler.request_streaming, handler.response_streaming)]
    return build(
        fn if fn is not None else behaviour(handler),
        request_deserializer=None if raw_requests else handler.request_deserializer,
        response_serializer=response_serializer or handler.response_serializer,
    )


class WrappingInterceptor(grpc.ServerInterceptor):
    """Serves each method through `wrap(handler, method)`, built once per method: a method's handler is
    the same object on every call (unless an inner interceptor made one for that call), so its wrapper
    is cached against it, not rebuilt per RPC."""

    def __init__(self, wrap: Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler]) -> None:
        self._wrap = wrap
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
