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


# -- random requests --------------------------------------------------------------------------------------

_STRINGS = [
    "",
    "x",
    "a" * 700,
    "../../etc/passwd",
    "\x00",
    "é✓😀",
    "{{steps.x.output}}",
    "*",
    "workflow.*",
    "a[b",
    "analyst",
    "complete-workflow",
    "state",
    "task-1",
    " ",
    "SELECT 1; --",
]
_INTS = [0, 1, -1, 2, 3, 100, 2**31 - 1, -(2**31)]
_INT64S = [*_INTS, 2**63 - 1, -(2**63)]
_UINTS = [0, 1, 2, 100, 2**32 - 1]
_FLOATS = [0.0, 1.0, -1.0, 0.5, 1e308, float("inf"), float("-inf"), float("nan")]


def random_message(cls: type[Message], rng: Any, depth: int = 0) -> Message:
    """A message of cls with random (often odd, sometimes invalid) values in random fields."""
    msg = cls()
    fill(msg, rng, depth)
    return msg


def fill(msg: Any, rng: Any, depth: int) -> None:
    """Random content in msg (any message; the well-known types by their fields)."""
    d = msg.DESCRIPTOR
    name = d.full_name
    if name == "google.protobuf.Timestamp" or name == "google.protobuf.Duration":
        msg.seconds = rng.choice([0, 1, 60, 10**9, -1, 10**12, -(10**12), 253_402_300_799])
        msg.nanos = rng.choice([0, 1, 999_999_999, -1, 1_000_000_000])
        return
    if name == "google.protobuf.Value":
        _random_value(msg, rng, depth)
        return
    if name == "google.protobuf.Struct":
        for i in range(rng.randint(0, 3)):
            _random_value(msg.fields[rng.choice(_STRINGS) + str(i)], rng, depth + 1)
        return
    if name == "google.protobuf.ListValue":
        for _ in range(rng.randint(0, 3)):
            _random_value(msg.values.add(), rng, depth + 1)
        return
    for f in d.fields:
        if rng.random() < 0.45:
            continue
        _random_field(msg, f, rng, depth)


def _random_value(v: Any, rng: Any, depth: int) -> None:
    kind = rng.choice(
        ["null", "number", "string", "bool", "struct", "list", "none"] if depth < 3 else ["string"]
    )
    if kind == "null":
        v.null_value = 0
    elif kind == "number":
        v.number_value = rng.choice(_FLOATS + [3.0, 42.0])
    elif kind == "string":
        v.string_value = rng.choice(_STRINGS)
    elif kind == "bool":
        v.bool_value = rng.random() < 0.5
    elif kind == "struct":
        fill(v.struct_value, rng, depth + 1)
        v.struct_value.SetInParent()
    elif kind == "list":
        fill(v.list_value, rng, depth + 1)
        v.list_value.SetInParent()
    # "none": a Value with no kind set


def _scalar(f: FieldDescriptor, rng: Any) -> Any:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return rng.choice(_STRINGS)
    if t == FieldDescriptor.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))
    if t == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice(_FLOATS)
    if t == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        return rng.choice([*(v.number for v in f.enum_type.values), 99, -1])
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return rng.choice(_UINTS)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return rng.choice([*_UINTS, 2**64 - 1])
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return rng.choice(_INT64S)
    return rng.choice(_INTS)


def _random_field(msg: Message, f: Any, rng: Any, depth: int) -> None:
    sub = f.message_type
    if sub is not None and sub.GetOptions().map_entry:
        if depth > 4:
            return
        container = getattr(msg, f.name)
        key_f, value_f = sub.fields_by_name["key"], sub.fields_by_name["value"]
        for _ in range(rng.randint(0, 2)):
            key = _scalar(key_f, rng)
            if value_f.message_type is not None:
                fill(container[key], rng, depth + 1)
            else:
                container[key] = _scalar(value_f, rng)
        return
    if f.is_repeated:
        container = getattr(msg, f.name)
        for _ in range(rng.randint(0, 3 if depth < 3 else 0)):
            if sub is not None:
                fill(container.add(), rng, depth + 1)
            else:
                container.append(_scalar(f, rng))
        return
    if sub is not None:
        if depth > 4:
            return
        child = getattr(msg, f.name)
        child.SetInParent()
        fill(child, rng, depth + 1)
        return
    setattr(msg, f.name, _scalar(f, rng))
