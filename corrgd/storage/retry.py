"""Retrying transactions that failed for a transient reason.

Transient: SQLite's "database is locked/busy" (another process held the write
lock longer than the busy timeout), PostgreSQL serialization failures and
deadlocks, and dropped connections. Everything else (constraint violations,
bad data, programming errors) is raised at once.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# SQLSTATE classes/codes that are worth retrying on PostgreSQL.
_PG_TRANSIENT_STATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
}
_PG_TRANSIENT_CLASSES = ("08",)  # connection exceptions
_SQLITE_TRANSIENT_MESSAGES = ("database is locked", "database is busy", "database table is locked")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the failed transaction from the start may succeed."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return sqlstate in _PG_TRANSIENT_STATES or sqlstate.startswith(_PG_TRANSIENT_CLASSES)
    message = str(orig).lower()
    return any(m in message for m in _SQLITE_TRANSIENT_MESSAGES)


P = ParamSpec("P")
R = TypeVar("R")


def backoff_delay(attempt: int, base_delay: float, max_delay: float) -> float:
    """Seconds to wait after failed try number ``attempt`` (0-based): exponential, jittered.

    ``base_delay * 2**attempt`` capped at ``max_delay``, scaled by a random factor
    in [0.5, 1] so that workers which collided do not retry in lockstep.
    """
    return min(max_delay, base_delay * 2**attempt) * random.uniform(0.5, 1.0)


def retry_transient(
    *,
    attempts: int = 8,
    base_delay: float = 0.05,
    max_delay: float = 5.0,
    retry_if: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: call the function again while it raises a transient error.

    The function must be safe to re-run from the start, i.e. one whole
    transaction (the failed one was rolled back). After ``attempts`` tries the
    last error is raised.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in range(attempts):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if attempt + 1 >= attempts or not retry_if(exc):
                        raise
                    delay = backoff_delay(attempt, base_delay, max_delay)
                    log.warning(
                        "transient database error in %s (try %d/%d), retrying in %.2fs: %s",
                        getattr(fn, "__qualname__", fn),
                        attempt + 1,
                        attempts,
                        delay,
                        _first_line(exc),
                    )
                    sleep(delay)
            raise AssertionError("unreachable")

        return wrapper

    return decorate


def _first_line(exc: BaseException) -> str:
    """An error's first line: SQLAlchemy's add the statement and a link on lines of their
    own ("[SQL: BEGIN IMMEDIATE]", "Background on this error at ...")."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]
