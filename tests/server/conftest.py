"""Fixtures shared by the component-level tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engines import Engines, build
from fake_clock import FakeClock
from openai_stub import StubLLM
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voltorch_server import telemetry


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    """A local OpenAI-compatible endpoint (answers at once, no capacity limit)."""
    s = StubLLM()
    yield s
    s.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the servers of this process finish while the test runs."""
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.add_span_processor(processor)
    yield exporter
    telemetry.remove_span_processor(processor)


@pytest.fixture
def engines(db) -> Iterator[Engines]:
    """Every component, built on the test's database (`db`: SQLite, or both backends where a module asks)."""
    e = build(db)
    yield e
    e.stop()
