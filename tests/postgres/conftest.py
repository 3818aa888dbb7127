"""The PostgreSQL tests run the worker's project (tests/worker/conftest.py) on a PostgreSQL
store: `store_url` here is a fresh database of the session's server."""

from __future__ import annotations

import pytest

from tests.worker.conftest import project

__all__ = ["project", "store_url"]


@pytest.fixture
def store_url(postgres_url: str) -> str:
    return postgres_url
