"""Shared fixtures for the test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pg_schema import PG_URL, fresh_pg_schema

from corrgd.storage import ResultsDB, open_db


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from the same global torch RNG state."""
    torch.manual_seed(0)


@pytest.fixture
def float64() -> Iterator[None]:
    """Build tensors and modules in float64 for the duration of a test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run on one intra-op thread: the tiny tensors of the maths tests gain nothing from
    more, and lose a lot when the machine's cores are busy with other work. Tests that
    compare a member with its run alone bit for bit need it too: with two threads, MKL
    splits a small product like (10 x 64)(64 x 16) across them for a group of one and not
    for a larger group (measured on an AVX2 CPU), which rounds it otherwise."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.services,
                pytest.mark.skipif(not PG_URL, reason="CORRGD_TEST_PG_URL is not set"),
            ],
        ),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a fresh PostgreSQL schema (skipped
    unless CORRGD_TEST_PG_URL names a server). Modules with their own `db_url` override it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/results.sqlite"
        return
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[ResultsDB]:
    handle = open_db(db_url)
    yield handle
    handle.close()
