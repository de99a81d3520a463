"""The one place where errors become gRPC status.

A server interceptor wraps every handler (unary and streaming): a domain error becomes its status code
with `google.rpc.Status` details written by voltorch.wire (ErrorInfo always; BadRequest field violations;
PreconditionFailure); anything else becomes INTERNAL with an error id — never a stack trace to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status
from voltorch import wire

from .. import errors as e
from .._ids import new_id
from ._handlers import WrappingInterceptor, behaviour, rebuild
from ._requests import RequestDecoding

Decode = Callable[[bytes], Message]

log = logging.getLogger("voltorch.errors")

_CODES: list[tuple[type[e.VoltorchError], grpc.StatusCode]] = [
    (e.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (e.NotFound, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (e.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (e.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (e.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.Aborted, grpc.StatusCode.ABORTED),
    (e.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (e.Cancelled, grpc.StatusCode.CANCELLED),
    (e.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (e.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (e.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (e.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
]

# Observers of every error mapped (the watcher records them with their trace ids).
error_hooks: list[Callable[[str, BaseException, grpc.StatusCode], None]] = []


def code_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class ErrorParts:
    """A domain error as a message carries it when it answers one item of a stream (PublishStream's
    PublishError), mapped here like the call's status would be."""

    code: int  # a google.rpc.Code
    reason: str
    field: str  # the first field violation's ("" when the error names none)
    message: str


def error_parts(exc: e.VoltorchError) -> ErrorParts:
    code = getattr(code_pb2, code_for(exc).name)
    field = exc.violations[0].field if isinstance(exc, e.InvalidArgument) else ""
    return ErrorParts(code, exc.reason, field, exc.message)


def to_status(exc: BaseException) -> grpc.Status:
    """A grpc.Status carrying google.rpc.Status details for exc."""
    code = code_for(exc)
    if isinstance(exc, e.VoltorchError) and code != grpc.StatusCode.INTERNAL:
        message, reason, metadata = exc.message, exc.reason, exc.metadata
    else:
        error_id = new_id("err")
        log.error("internal error %s", error_id, exc_info=exc)
        message = f"internal error (id {error_id}); the server log has the details"
        reason, metadata = "INTERNAL", {"error_id": error_id}
    fields = exc.violations if isinstance(exc, e.InvalidArgument) else ()
    preconditions = exc.violations if isinstance(exc, e.FailedPrecondition) else ()
    details = wire.error_details_pb(
        reason,
        {k: _clip(v, MAX_VALUE) for k, v in metadata.items()},
        field_violations=[
            e.FieldViolation(_clip(v.field, MAX_NAME), _clip(v.description, MAX_DESCRIPTION))
            for v in fields[:MAX_VIOLATIONS]
        ],
        precondition_violations=[
            e.PreconditionViolation(
                _clip(v.type, MAX_NAME), _clip(v.subject, MAX_VALUE), _clip(v.description, MAX_DESCRIPTION)
            )
            for v in preconditions[:MAX_VIOLATIONS]
        ],
    )
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=_clip(message, MAX_MESSAGE), details=details
    )
    if reason in NO_CLIENT_RETRY:
        return _no_retry(rpc_status.to_status(status))
    return rpc_status.to_status(status)


# The status travels in trailers, which grpc caps (16 KiB hard, 8 KiB soft): an error echoing an over-long
# input (an id, a key) would otherwise reach the client as RESOURCE_EXHAUSTED "metadata size exceeds".
# Limits are UTF-8 bytes: at most ~1 KiB of message and ~3.5 KiB of violations (~4.7 KiB once base64'd),
# below the soft cap; a template's several problems still read whole, a whole state key (<= 512 bytes)
# still fits a subject.
MAX_MESSAGE = 1024
MAX_NAME = 128  # a violation's field or type
MAX_VALUE = 512  # a precondition violation's subject; an ErrorInfo metadata value
MAX_DESCRIPTION = 200
MAX_VIOLATIONS = 10


def _clip(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"  # "…" is 3 bytes


# UNAVAILABLE that another replica cannot cure (they all share the database): a negative retry pushback
# tells a client's grpc retry policy (the SDK retries idempotent calls on UNAVAILABLE) to return it at
# once; the caller retries after its own backoff.
NO_CLIENT_RETRY = frozenset({"DATABASE_UNAVAILABLE"})


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def _no_retry(status: grpc.Status) -> grpc.Status:
    trailers = (*status.trailing_metadata, ("grpc-retry-pushback-ms", "-1"))
    return _Status(status.code, status.details, trailers)


def _abort(context: grpc.ServicerContext, method: str, exc: BaseException) -> None:
    status = to_status(exc)
    for hook in error_hooks:
        try:
            hook(method, exc, status.code)
        except Exception:
            log.exception("error hook failed")
    context.abort_with_status(status)


def _wrap_unary(fn: Callable, method: str, decode: Decode | None) -> Callable:
    if decode is None:

        def handler(request, context):
            try:
                return fn(request, context)
            except Exception as exc:
                if _reraise(exc, context, method):
                    raise
                return None

        return handler

    def decoding(request, context):  # the same, with the request decoded in this frame
        try:
            return fn(decode(request), context)
        except Exception as exc:
            if _reraise(exc, context, method):
                raise
            return None

    return decoding


def _wrap_stream(fn: Callable, method: str, decode: Decode | None) -> Callable:
    def handler(request, context):
        try:
            yield from fn(request if decode is None else decode(request), context)
        except Exception as exc:
            if _reraise(exc, context, method):
                raise

    return handler


def _reraise(exc: Exception, context: grpc.ServicerContext, method: str) -> bool:
    """Answer exc with its status (True: let it through as it is, an abort already made)."""
    if _is_abort(exc, context):
        return True
    if not _client_left(exc, context):
        _abort(context, method, exc)
    return False


def _client_left(exc: BaseException, context: grpc.ServicerContext) -> bool:
    """A client that cancelled or went away mid-call is not a server failure: reading its request stream
    then raises a bare grpc.RpcError (grpcurl's reflection stream, Ctrl-C on a Subscribe). Nobody is left
    to receive a status; nothing is logged above DEBUG or recorded."""
    if isinstance(exc, grpc.RpcError) and not context.is_active():
        log.debug("client left mid-call: %r", exc)
        return True
    return False


def _is_abort(exc: BaseException, context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after setting the code; let it through untouched.
    return type(exc) is Exception and context.code() is not None


class ErrorInterceptor(WrappingInterceptor):
    """Maps every error to its status; with `requests`, the same wrapper also decodes and checks each
    request (grpcio hands it the bytes), so the door costs no extra frame or interceptor per call."""

    def __init__(self, requests: RequestDecoding | None = None) -> None:
        super().__init__(lambda handler, method: _wrap(handler, method, requests))


def _wrap(
    handler: grpc.RpcMethodHandler, method: str, requests: RequestDecoding | None
) -> grpc.RpcMethodHandler:
    fn = behaviour(handler)
    decode = requests.for_handler(handler, method) if requests is not None else None
    raw = decode is not None
    if decode is not None and handler.request_streaming:
        fn, decode = _decoding_each(fn, decode), None
    wrap = _wrap_stream if handler.response_streaming else _wrap_unary
    return rebuild(handler, wrap(fn, method, decode), raw_requests=raw)


def _decoding_each(fn: Callable, decode: Decode) -> Callable:
    def decoded(requests, context):  # each request decoded (and checked) as the servicer reads it
        return fn(map(decode, requests), context)

    return decoded
