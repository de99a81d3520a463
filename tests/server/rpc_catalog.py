"""Every RPC a server offers, from the service descriptors, and a way to call any of them with raw bytes.

Used by the table-driven request-check tests and the hostile-input sweep: a new service, method or field
is covered without touching the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import symbol_database
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from voltorch_server.app import SERVICES

WELL_KNOWN_CHECKED = ("google.protobuf.Timestamp", "google.protobuf.Duration")


@dataclass(frozen=True)
class Rpc:
    path: str  # /package.Service/Method
    method: MethodDescriptor

    @property
    def request_type(self) -> type[Message]:
        return message_class(self.method.input_type)

    @property
    def client_streaming(self) -> bool:
        return self.method.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming


def message_class(d: Descriptor) -> type[Message]:
    return symbol_database.Default().GetSymbol(d.full_name)


def all_rpcs(*, include_standard: bool = True) -> list[Rpc]:
    """Every method of every voltorch service (and grpc.health.v1 and reflection when asked)."""
    services = [pb.DESCRIPTOR.services_by_name[n.rsplit(".", 1)[-1]] for n, pb in SERVICES.items()]
    if include_standard:
        services.append(health_pb2.DESCRIPTOR.services_by_name["Health"])
        services.append(reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"])
    return [Rpc(f"/{s.full_name}/{m.name}", m) for s in services for m in s.methods]


def call_raw(
    channel: grpc.Channel, rpc: Rpc, payload: bytes, *, timeout: float = 10.0, max_messages: int = 1
) -> tuple[grpc.StatusCode, str]:
    """Send payload (bytes, whatever they are) and return the status the server ends with: for server
    streams, after at most max_messages responses the call is cancelled and OK is returned."""
    ident = None  # no serializer: bytes go as they are, come back as they are
    if not rpc.client_streaming and not rpc.server_streaming:
        try:
            channel.unary_unary(rpc.path, request_serializer=ident, response_deserializer=ident)(
                payload, timeout=timeout
            )
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    if rpc.client_streaming:
        call = channel.stream_stream(rpc.path, request_serializer=ident, response_deserializer=ident)(
            iter([payload]), timeout=timeout
        )
    else:
        call = channel.unary_stream(rpc.path, request_serializer=ident, response_deserializer=ident)(
            payload, timeout=timeout
        )
    try:
        for i, _ in enumerate(call, 1):
            if i >= max_messages:
                call.cancel()
                return grpc.StatusCode.OK, ""
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def field_paths(d: Descriptor, wanted: tuple[str, ...], depth: int = 6) -> Iterator[tuple[str, list[Any]]]:
    """(path as the server names it, steps to reach it) for every field of a wanted type within d.
    A step is (field descriptor, repeated?); repeated fields are reached through their first element."""

    def walk(desc: Descriptor, prefix: str, steps: list[Any], seen: tuple[str, ...]) -> Iterator[Any]:
        for f in desc.fields:
            sub = f.message_type
            if sub is None or sub.GetOptions().map_entry:
                continue
            name = f"{prefix}.{f.name}" if prefix else f.name
            if f.is_repeated:
                name += "[0]"
            here = [*steps, f]
            if sub.full_name in wanted:
                yield name, here
            elif len(steps) < depth and sub.full_name not in seen and not sub.full_name.startswith("google."):
                yield from walk(sub, name, here, (*seen, sub.full_name))

    yield from walk(d, "", [], (d.full_name,))


def reach(msg: Message, steps: list[FieldDescriptor]) -> Message:
    """The message at the end of steps inside msg, creating (and adding first elements) on the way."""
    for f in steps:
        if f.is_repeated:
            msg = getattr(msg, f.name).add()
        else:
            msg = getattr(msg, f.name)
            msg.SetInParent()
    return msg
