"""Server logging from config: level, text or JSON lines, to stderr and/or a file."""

from __future__ import annotations

import json
import logging
import sys
import time

from .telemetry import current_trace

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace id so logs join traces and events."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = current_trace().trace_id
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", fmt: str = "text", file: str = "", destination: str = "stderr") -> None:
    """destination: "stderr", "file" or "both" (file needs `file`)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', not {fmt!r}")
    if destination not in ("stderr", "file", "both"):
        raise ValueError(f"log_destination must be 'stderr', 'file' or 'both', not {destination!r}")
    if destination != "stderr" and not file:
        raise ValueError(f"log_destination {destination!r} needs log_file")
    handlers: list[logging.Handler] = []
    if destination in ("stderr", "both"):
        handlers.append(logging.StreamHandler(sys.stderr))
    if destination in ("file", "both"):
        handlers.append(logging.FileHandler(file))
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT)
    for h in handlers:
        h.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
