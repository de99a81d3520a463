"""Fixtures shared by the component-level tests."""

from __future__ import annotations

import pytest
from fake_clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
