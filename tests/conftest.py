"""Shared fixtures for the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


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
    more, and lose a lot when the machine's cores are busy with other work."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
