"""How client commands print: a table for a person at a terminal, JSON for a script.

JSON output is the SDK's dataclasses with their field names as keys, in field order, and values as JSON
(state values stay JSON values; times are ISO 8601; durations seconds). `json` prints one document (a
list for listings); `jsonl` one object per line, flushed, so `| head` and `| jq` see records at once.
Streams (follow, watch) print jsonl in either JSON format.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

FORMATS = ("table", "json", "jsonl")


def jsonable(obj: Any) -> Any:
    """A JSON-ready copy: dataclasses as objects in field order, datetimes ISO 8601, enums by name."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, enum.Enum):
        return obj.name.lower()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(jsonable(obj), indent=indent, ensure_ascii=False)


def shorten(text: str, width: int) -> str:
    """At most `width` characters on one line; a cut ends at a word boundary (when there is one in the
    last third) and always shows an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[: max(width - 1, 0)]
    space = cut.rfind(" ")
    if space >= width * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


# rich is imported when a command prints, so `voltorch serve` parses its arguments without the cli extra.
def console(stream: TextIO | None = None) -> Console:
    """A rich console for people: colours and the terminal's width on a terminal, plain 140 columns else."""
    from rich.console import Console

    stream = stream or sys.stdout
    tty = stream.isatty()
    return Console(file=stream, highlight=False, soft_wrap=True, width=None if tty else 140)


def new_table(**kwargs: Any) -> Table:
    from rich.table import Table

    return Table(**kwargs)


class Output:
    """One command's printer. `format` is table, json or jsonl; `table` only draws for a terminal unless
    asked for explicitly."""

    def __init__(self, fmt: str | None, *, default: str | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        tty = self.stream.isatty()
        self.format = fmt or default or ("table" if tty else "jsonl")
        self.console = console(self.stream)

    @property
    def json(self) -> bool:
        return self.format in ("json", "jsonl")

    def write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def record(self, obj: Any, table: Callable[[Console], None]) -> None:
        """One object: drawn by `table(console)`, or printed as JSON."""
        if self.format == "json":
            self.write(dumps(obj, indent=2))
        elif self.format == "jsonl":
            self.write(dumps(obj))
        else:
            table(self.console)

    def rows(
        self,
        columns: Sequence[str],
        items: Iterable[Any],
        cells: Callable[[Any], Sequence[str]],
        *,
        title: str | None = None,
    ) -> None:
        """A listing: a table, a JSON list, or one JSON object per line (printed as they come)."""
        if self.format == "jsonl":
            for item in items:
                self.write(dumps(item))
        elif self.format == "json":
            self.write(json.dumps([jsonable(item) for item in items], indent=2, ensure_ascii=False))
        else:
            table = new_table(title=title)
            for col in columns:
                table.add_column(col)
            for item in items:
                table.add_row(*cells(item))
            self.console.print(table)

    def message(self, text: str) -> None:
        """A note for the person (not part of the data): stdout for tables, stderr next to JSON."""
        if self.json:
            print(text, file=sys.stderr, flush=True)
        else:
            self.console.print(text)


class Lines:
    """A stream of records (follow, watch): fixed-width text lines under one header row, or jsonl."""

    def __init__(self, out: Output, header: str, line: Callable[[Any], str]):
        self.out = out
        self._header = header
        self._line = line
        self._headed = False

    def start(self) -> None:
        """The header row now, as the stream starts (a quiet stream still shows what it will print)."""
        if not self.out.json and not self._headed:
            self._headed = True
            self.out.write(self._header)

    def __call__(self, item: Any) -> None:
        if self.out.json:
            self.out.write(dumps(item))
            return
        self.start()
        self.out.write(self._line(item))
