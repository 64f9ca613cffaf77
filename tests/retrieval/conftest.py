"""Retrieval tests run against the test's own services (no app): the real embedder,
index and second stage on the test's data dir. ``db`` comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.db import Database
from core.settings import Settings
from services.container import Services
from tests.support.helpers import make_services


@pytest.fixture
def services(settings: Settings, db: Database) -> Iterator[Services]:
    built = make_services(settings, db)
    yield built
    built.close()  # each test has its own data dir; release its shard
