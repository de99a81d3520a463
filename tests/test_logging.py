"""Logging from config: JSON lines with trace ids, file destinations, clear errors for bad settings."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from voltorch_server import logs


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield
    for h in root.handlers:
        if h not in saved[1]:
            h.close()
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])


def test_json_lines_to_a_file_carry_the_trace_id(tmp_path):
    log_file = tmp_path / "voltorch.log"
    logs.configure("INFO", "json", str(log_file), "file")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("voltorch.test").info("hello %s", "world")
        trace_id = format(span.get_span_context().trace_id, "032x")
    logging.getLogger("voltorch.test").debug("not at INFO")
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines == [
        {
            "time": lines[0]["time"],
            "level": "info",
            "logger": "voltorch.test",
            "message": "hello world",
            "trace_id": trace_id,
        }
    ]
    assert trace.get_current_span().get_span_context().is_valid is False


@pytest.mark.parametrize(
    "args, message",
    [
        (("INFO", "xml", "", "stderr"), "log_format"),
        (("INFO", "text", "", "syslog"), "log_destination"),
        (("INFO", "text", "", "both"), "needs log_file"),
    ],
)
def test_bad_logging_settings_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        logs.configure(*args)
