"""Exceptions raised by the storage layer."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for errors raised by :mod:`corrgd.storage`."""


class UnknownSweep(StorageError, LookupError):
    """No sweep with the given name exists in the database."""


class MissingDatabase(StorageError):
    """A command that only reads was pointed at a database that does not exist."""


class SchemaTooOld(StorageError):
    """A command that only reads met a database an older corrgd wrote (not upgraded)."""


class ReadOnlyDatabase(StorageError):
    """A command that writes was given an SQLite file it cannot write."""


class ForeignDatabase(StorageError):
    """The database holds tables but no corrgd schema: another application's."""


class DamagedDatabase(StorageError):
    """The database is at corrgd's newest schema but lacks some of its tables: changed by
    hand or by another program."""


class SchemaTooNew(StorageError):
    """The database was written by a newer corrgd whose migrations this one lacks."""


class SweepBusy(StorageError):
    """The sweep has running runs, and the operation needs none."""
