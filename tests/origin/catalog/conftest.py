"""A catalog on a real SQLite file in tmp_path, driven by a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from origin.catalog import RetryPolicy, SqliteCatalog

START = 1_700_000_000.0


class Clock:
    """Seconds since the epoch that only move when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "catalog.db"


@pytest.fixture
def catalog(db_path: Path, clock: Clock) -> Iterator[SqliteCatalog]:
    with SqliteCatalog.open(db_path, now=clock, retry=RetryPolicy(base_s=10, max_s=60)) as c:
        yield c
