"""Faults of the machine rather than of a run: a full disk.

A run whose checkpoint or epoch rows cannot be written for want of space has done nothing
wrong; marking it failed would hide the cause, and every other run would fail the same way.
The worker gives its runs back and stops with :class:`DiskFull`; a rerun, once space is
free, resumes them from their last checkpoint.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from corrgd.run.executors.base import WorkerStopped
from corrgd.storage.files import nearest_existing

#: SQLite's result code for "database or disk is full", PostgreSQL's SQLSTATE disk_full.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


class DiskFull(WorkerStopped):
    """A worker stopped because a disk it writes to is full; its runs are back in the queue
    (where the database could still be written) and resume on a rerun."""

    @classmethod
    def of(cls, what: str, error: BaseException) -> DiskFull:
        reason = getattr(error, "strerror", None) or "No space left on device"
        return cls(f"{what} is full ({reason}); free space and rerun the same command: "
                   "the runs resume from their last saved epoch")


def full_disk(error: BaseException, near: Path | None = None) -> str | None:
    """What is full, if `error` (or an error it was raised from) says a disk is full: the
    file's path for an OSError, "the results database" for a database error; else None.
    SQLite cannot always tell: an I/O error where the disk holding `near` (an SQLite file)
    has no space left counts too."""
    if near is not None and getattr(getattr(error, "orig", None), "sqlite_errorcode",
                                    None) is not None and _no_space_left(near):
        return f"the disk holding {near}"
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the disk holding {e.filename}" if e.filename else "a disk"
        orig = getattr(e, "orig", None)  # a SQLAlchemy DBAPIError wraps the driver's error
        if getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL or \
                getattr(orig, "sqlstate", None) == _PG_DISK_FULL:
            return "the disk holding the results database"
        e = e.__cause__ or e.__context__
    return None



def _no_space_left(path: Path) -> bool:
    """Whether the file system of `path` (or of its nearest existing folder) is full."""
    stats = os.statvfs(nearest_existing(path))
    return stats.f_bavail * stats.f_frsize < 64 * 1024
