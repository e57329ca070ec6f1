"""Fixtures for tests/core."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Tests that point structlog at pytest's capture put the previous setup back, so a
    later test never writes into a capture buffer that is already closed."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
