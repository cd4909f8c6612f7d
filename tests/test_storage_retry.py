"""Tests of the transient-error retry helper of corrgd.storage (no database needed)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from corrgd.storage.retry import backoff_delay, is_transient, retry_transient


class FakePgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"pg error {sqlstate}")
        self.sqlstate = sqlstate


def locked() -> OperationalError:
    return OperationalError("UPDATE runs ...", {}, sqlite3.OperationalError("database is locked"))


def test_is_transient_classifies_errors() -> None:
    assert is_transient(locked())
    assert is_transient(OperationalError("SELECT 1", {}, FakePgError("40001")))  # serialization
    assert is_transient(OperationalError("SELECT 1", {}, FakePgError("40P01")))  # deadlock
    assert is_transient(OperationalError("SELECT 1", {}, FakePgError("08006")))  # conn. failure
    dropped = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    dropped.connection_invalidated = True
    assert is_transient(dropped)
    assert not is_transient(OperationalError("SELECT 1", {}, FakePgError("42P01")))  # no table
    assert not is_transient(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_transient(ValueError("database is locked"))


def test_retries_transient_errors_with_growing_backoff() -> None:
    calls, delays = [], []

    @retry_transient(attempts=5, base_delay=0.1, max_delay=0.3, sleep=delays.append)
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 4:
            raise locked()
        return 2 * x

    assert flaky(21) == 42
    assert calls == [21] * 4
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):  # 0.1, 0.2, then capped at 0.3; jitter in [.5, 1]
        cap = min(0.3, 0.1 * 2**attempt)
        assert cap / 2 <= delay <= cap


def test_gives_up_after_attempts_and_reraises() -> None:
    delays: list[float] = []

    @retry_transient(attempts=3, sleep=delays.append)
    def always_locked() -> None:
        raise locked()

    with pytest.raises(OperationalError, match="database is locked"):
        always_locked()
    assert len(delays) == 2


def test_permanent_errors_are_not_retried() -> None:
    calls: list[int] = []

    @retry_transient(sleep=lambda _: pytest.fail("should not sleep"))
    def broken() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))

    with pytest.raises(IntegrityError):
        broken()
    assert calls == [1]


def test_backoff_delay_is_capped() -> None:
    assert all(0.5 <= backoff_delay(30, base_delay=0.05, max_delay=1.0) <= 1.0 for _ in range(50))
    with pytest.raises(ValueError):
        retry_transient(attempts=0)


def test_a_retry_is_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    @retry_transient(attempts=2, sleep=lambda _: None)
    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise locked()  # SQLAlchemy's text: 3 lines ([SQL: ...], Background on ...)

    with caplog.at_level("WARNING"):
        flaky()
    (record,) = caplog.records
    assert "database is locked" in record.getMessage()
    assert "\n" not in record.getMessage() and "[SQL" not in record.getMessage()
