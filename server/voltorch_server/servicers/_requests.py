"""Requests decoded and checked at the door, before any servicer sees them.

grpcio's own deserializer answers undecodable bytes with INTERNAL and logs a traceback per call (before
authentication, so anyone could fill the log). Here the bytes reach our handler undecoded instead:
undecodable ones get INVALID_ARGUMENT and one rate-limited warning line. The error interceptor (inside
authentication) decodes through RequestDecoding, so a call that auth rejects is never decoded at all.

A decoded request is then checked where its wire form allows values with no meaning, for every field of
every request, found from the message descriptors (a new field is covered without a servicer change):
- google.protobuf.Timestamp: seconds within 0001-01-01..9999-12-31, nanos within 0..999,999,999;
- google.protobuf.Duration: within ±10,000 years, nanos within ±999,999,999 with the seconds' sign;
- google.protobuf.Value: one kind set (a misspelt `structValue` from a JSON client arrives as none),
  nested inside Structs and lists too;
- text fields: no NUL character (PostgreSQL cannot store one in a text column). JSON values may hold one
  (they are stored escaped); events check their own text (PublishStream answers each one apart), and a
  worker's results and progress are its session's to judge.
Each problem is INVALID_ARGUMENT naming the field (`events[2].data["user"]`); nothing is written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from ..errors import InvalidArgument

log = logging.getLogger("voltorch.requests")

# The ranges google/protobuf/timestamp.proto and duration.proto define.
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000  # 10,000 years
_MAX_NANOS = 999_999_999

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_VALUE = "google.protobuf.Value"
_STRUCT = "google.protobuf.Struct"
_LIST = "google.protobuf.ListValue"
_VALUE_KINDS = "null_value, number_value, string_value, bool_value, struct_value or list_value"


class _Bad(Exception):
    """A problem found deep in a message; the path is collected (innermost first) on the way out."""

    def __init__(self, description: str, *, reason: str):
        super().__init__(description)
        self.description = description
        self.reason = reason  # the ErrorInfo.reason sent
        self.path: list[str] = []

    def field(self) -> str:
        return "".join(reversed(self.path)).lstrip(".")


# -- the well-known types ----------------------------------------------------------------------------------


def check_timestamp(t: Any) -> None:
    if not (MIN_TIMESTAMP_SECONDS <= t.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= t.nanos <= _MAX_NANOS):
        raise _Bad(
            "not a valid Timestamp: seconds must lie within 0001-01-01..9999-12-31 and nanos within "
            f"0..{_MAX_NANOS} (got seconds={t.seconds}, nanos={t.nanos})",
            reason="TIMESTAMP_INVALID",
        )


def check_duration(d: Any) -> None:
    s, n = d.seconds, d.nanos
    if not (-MAX_DURATION_SECONDS <= s <= MAX_DURATION_SECONDS and -_MAX_NANOS <= n <= _MAX_NANOS) or (
        (s > 0 and n < 0) or (s < 0 and n > 0)
    ):
        raise _Bad(
            f"not a valid Duration: seconds must lie within ±{MAX_DURATION_SECONDS} and nanos within "
            f"±{_MAX_NANOS} with the sign of seconds (got seconds={s}, nanos={n})",
            reason="DURATION_INVALID",
        )


def check_value(v: Any) -> None:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise _Bad(f"a Value must have one kind set ({_VALUE_KINDS}); none is", reason="VALUE_INVALID")
    if kind == "struct_value":
        check_struct(v.struct_value)
    elif kind == "list_value":
        check_list(v.list_value)


def check_struct(s: Any) -> None:
    for key, item in s.fields.items():
        try:
            check_value(item)
        except _Bad as exc:
            exc.path.append(f"[{_quote(key)}]")
            raise


def check_list(lv: Any) -> None:
    for i, item in enumerate(lv.values):
        try:
            check_value(item)
        except _Bad as exc:
            exc.path.append(f"[{i}]")
            raise


def _quote(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


_WELL_KNOWN: dict[str, Callable[[Any], None]] = {
    _TIMESTAMP: check_timestamp,
    _DURATION: check_duration,
    _VALUE: check_value,
    _STRUCT: check_struct,
    _LIST: check_list,
}

# -- any message, from its descriptor ----------------------------------------------------------------------

Check = Callable[[Any], None]
_checks: dict[str, Check | None] = {}
_checks_lock = threading.Lock()


def checker(descriptor: Descriptor) -> Check | None:
    """The check of one message type; None when it has no field that needs one (nothing to do)."""
    name = descriptor.full_name
    try:
        return _checks[name]
    except KeyError:
        pass
    with _checks_lock:
        if name not in _checks:
            _build(descriptor, _reaches_well_known(descriptor, {}, set()))
        return _checks[name]


def _reaches_well_known(d: Descriptor, memo: dict[str, bool], visiting: set[str]) -> bool:
    """Does a message of type d contain (at any depth) a field of a well-known type that is checked?"""
    if d.full_name in _WELL_KNOWN:
        return True
    if d.full_name in memo:
        return memo[d.full_name]
    if d.full_name in visiting:
        return True  # a cycle: assume so (at worst a walk that finds nothing)
    visiting.add(d.full_name)
    found = any(
        f.message_type is not None and _reaches_well_known(f.message_type, memo, visiting) for f in d.fields
    )
    visiting.discard(d.full_name)
    memo[d.full_name] = found
    return found


def _build(d: Descriptor, needed: bool) -> None:
    """Register the check of d (and of the message types it needs), under _checks_lock."""
    if not needed:
        _checks[d.full_name] = None
        return
    if d.full_name in _WELL_KNOWN:
        _checks[d.full_name] = _WELL_KNOWN[d.full_name]
        return
    plan: list[tuple[str, str, str]] = []  # (field name, shape, message type name)
    _checks[d.full_name] = _MessageCheck(plan)  # registered first: recursive types find it
    memo: dict[str, bool] = {}
    for f in d.fields:
        sub = f.message_type
        if sub is None:
            continue
        if sub.GetOptions().map_entry:
            value = sub.fields_by_name["value"].message_type
            if value is not None and _reaches_well_known(value, memo, set()):
                if value.full_name not in _checks:
                    _build(value, True)
                plan.append((f.name, "map", value.full_name))
            continue
        if not _reaches_well_known(sub, memo, set()):
            continue
        if sub.full_name not in _checks:
            _build(sub, True)
        plan.append((f.name, "list" if f.is_repeated else "one", sub.full_name))


class _MessageCheck:
    """Checks the fields of one message type that (may) hold a well-known type."""

    __slots__ = ("plan",)

    def __init__(self, plan: list[tuple[str, str, str]]):
        self.plan = plan

    def __call__(self, msg: Any) -> None:
        for name, shape, sub in self.plan:
            check = _checks[sub]
            if check is None:
                continue
            if shape == "one":
                if not msg.HasField(name):
                    continue
                try:
                    check(getattr(msg, name))
                except _Bad as exc:
                    exc.path.append(f".{name}")
                    raise
            elif shape == "list":
                for i, item in enumerate(getattr(msg, name)):
                    try:
                        check(item)
                    except _Bad as exc:
                        exc.path.append(f".{name}[{i}]")
                        raise
            else:
                for key, item in getattr(msg, name).items():
                    try:
                        check(item)
                    except _Bad as exc:
                        exc.path.append(f".{name}[{_quote(str(key))}]")
                        raise


# -- NUL in text fields ------------------------------------------------------------------------------------

# JSON holds any text; events, and a worker's results and progress, are answered one by one downstream.
_NUL_FREE_SKIPPED = frozenset(
    {_VALUE, _STRUCT, _LIST, "voltorch.v1.Event", "voltorch.v1.TaskResult", "voltorch.v1.TaskProgress"}
)


def check_text(msg: Any) -> None:
    """_Bad for the first string field (at any depth, map keys and values too) holding a NUL."""
    for fd, value in msg.ListFields():
        if fd.type == fd.TYPE_STRING:
            if not fd.is_repeated:
                _nul_free(value, f".{fd.name}")
            for i, text in enumerate(value if fd.is_repeated else ()):
                _nul_free(text, f".{fd.name}[{i}]")
            continue
        sub = fd.message_type
        if sub is None or sub.full_name in _NUL_FREE_SKIPPED:
            continue
        if sub.GetOptions().map_entry:
            kind = sub.fields_by_name["value"].message_type
            for key, item in value.items():
                at = f".{fd.name}[{_quote(str(key))}]"
                _nul_free(str(key), at)
                if kind is None:
                    _nul_free(str(item), at)
                elif kind.full_name not in _NUL_FREE_SKIPPED:
                    _within(check_text, item, at)
            continue
        if fd.is_repeated:
            for i, item in enumerate(value):
                _within(check_text, item, f".{fd.name}[{i}]")
        else:
            _within(check_text, value, f".{fd.name}")


def _nul_free(text: str, path: str) -> None:
    if "\x00" in text:
        exc = _Bad("must not contain a NUL character", reason="FIELD_INVALID")
        exc.path.append(path)
        raise exc


def _within(check: Check, msg: Any, path: str) -> None:
    try:
        check(msg)
    except _Bad as exc:
        exc.path.append(path)
        raise


def check_request(msg: Message) -> None:
    """INVALID_ARGUMENT naming the first field of msg whose Timestamp, Duration or Value has no meaning."""
    check = checker(cast(Descriptor, msg.DESCRIPTOR))
    if check is None:
        return
    try:
        check(msg)
    except _Bad as exc:
        raise InvalidArgument(exc.field(), exc.description, reason=exc.reason) from None


# -- decoding at the door ----------------------------------------------------------------------------------


class _RateLimitedWarning:
    """At most one log line per `every` seconds, saying how many were held back."""

    def __init__(self, every: float = 60.0):
        self.every = every
        self._last = -every
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        suffix = f" ({held} more since the last such line)" if held else ""
        log.warning(msg + suffix, *args)


def decoder(
    message_type: type[Message], method: str, warn: Callable[..., None]
) -> Callable[[bytes], Message]:
    """bytes -> a checked request of message_type; INVALID_ARGUMENT (and `warn`) when they are not one."""
    parse = message_type.FromString
    type_name = message_type.DESCRIPTOR.full_name
    check = checker(cast(Descriptor, message_type.DESCRIPTOR))

    def decode(data: bytes) -> Message:
        try:
            msg = parse(data)
        except Exception as exc:  # DecodeError, or anything else the parser raises: not a message
            warn("undecodable request to %s (%d bytes): %s", method, len(data), exc)
            raise InvalidArgument(
                "request", f"the request bytes are not a valid {type_name}", reason="REQUEST_UNDECODABLE"
            ) from None
        try:
            if check is not None:
                check(msg)
            if b"\x00" in data:  # no zero byte, no NUL: most requests skip the walk
                check_text(msg)
        except _Bad as exc:
            raise InvalidArgument(exc.field(), exc.description, reason=exc.reason) from None
        return msg

    return decode


def _message_type(deserializer: Any) -> type[Message] | None:
    owner = getattr(deserializer, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, Message):
        return owner
    return None


class RequestDecoding:
    """Takes decoding from grpcio: `for_handler` gives the function that decodes (and checks) a method's
    request bytes, and the error interceptor serves the method with raw bytes through it — in its own
    frame, so the check adds no layer per call, and inside authentication (a rejected call is never
    decoded). Undecodable requests are logged at most once per `log_every` seconds."""

    def __init__(self, *, log_every: float = 60.0) -> None:
        self._warn = _RateLimitedWarning(log_every)

    def for_handler(self, handler: grpc.RpcMethodHandler, method: str) -> Callable[[bytes], Message] | None:
        """bytes -> checked request for the method `handler` serves; None when grpcio must keep decoding
        (a deserializer that is not a generated message's FromString)."""
        message_type = _message_type(handler.request_deserializer)
        if message_type is None:
            return None
        return decoder(message_type, method, self._warn)
