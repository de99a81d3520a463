"""`{{ }}` placeholders in workflow text templates (paths inside them: see _jsonpath).

A placeholder names a parameter (`{{name}}`, `{{params.name}}`), an earlier step (`{{steps.<id>.output}}`,
`{{steps.<id>.result.<path>}}`, `{{steps.<id>.error}}`) or, inside a fan-out, the current element
(`{{item}}`, `{{item.<path>}}`, `{{item_index}}`). References are parsed once at registration (so a bad one
is an INVALID_ARGUMENT naming the field) and rendered at run time against a `Scope`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...shared import PathError, parse_path, resolve

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STEP_ID = r"[A-Za-z_][A-Za-z0-9_-]*"
_PARAM_RE = re.compile(rf"(?:params\.)?({_IDENT})")
_STEP_RE = re.compile(rf"steps\.({_STEP_ID})\.(output|error|result)((?:[.\[].*)?)")
_ITEM_RE = re.compile(r"item((?:[.\[].*)?)")
_MISSING = object()


@dataclass(frozen=True)
class Ref:
    """One parsed placeholder."""

    kind: str  # "param", "step", "item", "item_index"
    name: str = ""  # parameter name or step id
    attr: str = ""  # step: output | result | error
    path: str = ""  # step result / item sub-path (without the leading dot)


def parse_ref(expr: str) -> Ref:
    """Parse the inside of one `{{ }}`; ValueError with a readable message when it is not a reference."""
    if expr == "item_index":
        return Ref("item_index")
    m = _ITEM_RE.fullmatch(expr)
    if m:
        return Ref("item", path=_sub_path(m.group(1), expr))
    m = _STEP_RE.fullmatch(expr)
    if m:
        step_id, attr, rest = m.groups()
        if rest and attr != "result":
            raise ValueError(f"{{{{{expr}}}}}: only steps.<id>.result takes a path")
        return Ref("step", name=step_id, attr=attr, path=_sub_path(rest, expr))
    if expr.startswith("steps."):
        raise ValueError(
            f"{{{{{expr}}}}}: use steps.<id>.output, steps.<id>.result[.<path>] or steps.<id>.error"
        )
    m = _PARAM_RE.fullmatch(expr)
    if m and m.group(1) not in ("steps", "params"):
        return Ref("param", name=m.group(1))
    raise ValueError(f"{{{{{expr}}}}} is not a parameter, step or item reference")


def _sub_path(rest: str, expr: str) -> str:
    path = rest[1:] if rest.startswith(".") else rest
    try:
        parse_path(path)
    except PathError:
        raise ValueError(f"{{{{{expr}}}}}: malformed path") from None
    return path


def refs_in(text: str) -> Iterator[Ref]:
    """Every reference in a text template (raises ValueError for a malformed one)."""
    for m in _PLACEHOLDER.finditer(text):
        yield parse_ref(m.group(1))


def refs_in_value(value: Any) -> Iterator[Ref]:
    """References in every string inside a JSON value (context objects)."""
    if isinstance(value, str):
        yield from refs_in(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in_value(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs_in_value(v)


@dataclass(frozen=True)
class StepView:
    """What later steps may see of an earlier step."""

    output: str = ""
    result: Any = None  # structured output, else None
    error: str = ""


@dataclass
class Scope:
    params: dict[str, Any] = field(default_factory=dict)
    steps: Mapping[str, StepView] = field(default_factory=dict)  # read by id only: may be lazy
    item: Any = _MISSING
    item_index: int | None = None

    def lookup(self, ref: Ref) -> Any:
        if ref.kind == "param":
            return self.params.get(ref.name)
        if ref.kind == "item_index":
            return self.item_index
        if ref.kind == "item":
            if self.item is _MISSING:
                return None
            return resolve(self.item, ref.path)[1]
        view = self.steps.get(ref.name)
        if view is None:
            return None
        if ref.attr == "output":
            return view.output
        if ref.attr == "error":
            return view.error
        base = view.result if view.result is not None else view.output
        return resolve(base, ref.path)[1] if ref.path else base


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def render(text: str, scope: Scope) -> str:
    """Substitute every placeholder; objects and lists become JSON, missing values become ''."""
    return _PLACEHOLDER.sub(lambda m: as_text(scope.lookup(parse_ref(m.group(1)))), text)


def render_value(value: Any, scope: Scope) -> Any:
    """Render strings inside a JSON value; a string that is exactly one placeholder keeps the value's type."""
    if isinstance(value, str):
        m = _PLACEHOLDER.fullmatch(value.strip())
        if m:
            return scope.lookup(parse_ref(m.group(1)))
        return render(value, scope)
    if isinstance(value, dict):
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, scope) for v in value]
    return value
