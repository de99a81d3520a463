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
