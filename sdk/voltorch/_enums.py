"""The API's buf-style enums (`AGENT_KIND_LLM = 1`, `AGENT_KIND_UNSPECIFIED = 0`) as lower-case names
("llm"), read from the generated descriptors: one table per enum for the SDK and the server alike."""

from __future__ import annotations

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def values(enum: EnumTypeWrapper) -> dict[str, int]:
    """{'llm': 1, ...}: every value but UNSPECIFIED, by its name without the enum's prefix."""
    first = enum.DESCRIPTOR.values[0].name  # <PREFIX>UNSPECIFIED, buf style
    prefix = first.removesuffix("UNSPECIFIED")
    return {v.name.removeprefix(prefix).lower(): v.number for v in enum.DESCRIPTOR.values if v.number}


def names(enum: EnumTypeWrapper) -> dict[int, str]:
    """{1: 'llm', ...}: the inverse of values()."""
    return {n: name for name, n in values(enum).items()}
