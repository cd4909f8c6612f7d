"""Creating SQLAlchemy engines for the two supported backends.

SQLite (default, one file per results folder) and PostgreSQL (shared by many
workers, e.g. on a SLURM cluster). SQLite connections run in WAL mode with a
busy timeout and foreign keys on; write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue on the database lock instead of
failing half-way through (see :data:`WRITE_OPTIONS`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

from corrgd.storage import DEFAULT_URL, ENV_VAR
from corrgd.storage.errors import MissingDatabase, ReadOnlyDatabase
from corrgd.storage.files import nearest_existing
from corrgd.storage.runspec import dumps_jsonable

SUPPORTED_BACKENDS = ("sqlite", "postgresql")

#: Execution option read by the SQLite ``begin`` hook: how to open a transaction.
BEGIN_OPTION = "corrgd_sqlite_begin"
#: Options for engines/connections that write: take SQLite's write lock up front.
WRITE_OPTIONS = {BEGIN_OPTION: "IMMEDIATE"}

SQLITE_BUSY_TIMEOUT_MS = 30_000


URL_WITHOUT_SLASHES = re.compile(r"(sqlite|postgres(ql)?(\+\w+)?|file):", re.IGNORECASE)
URL_FORMS = "give an SQLite file (PATH or sqlite:///PATH) or postgresql+psycopg://USER:PW@HOST/DB"


def resolve_url(url: str | URL | None = None) -> URL:
    """The URL to use: ``url``, else ``$CORRGD_DB``, else the default SQLite file. A plain
    path (no ``scheme://``) is an SQLite file; a leading ~ in a file's path is a home.
    ValueError for a URL that is not one or of a database corrgd does not support."""
    given = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    if isinstance(given, str) and "://" not in given:
        if URL_WITHOUT_SLASHES.match(given):  # sqlite:x.sqlite made a file of that name
            raise ValueError(f"a URL without '//' ({given.partition(':')[0]}:...); "
                             f"{URL_FORMS}")
        given = f"sqlite:///{given}"
    try:
        resolved = make_url(given)
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        raise ValueError(f"not a database URL ({str(e).splitlines()[0]}); {URL_FORMS}") \
            from None
    if resolved.get_backend_name() == "sqlite" and (resolved.database or "").startswith("~"):
        home = os.path.expanduser(resolved.database or "")
        if home.startswith("~"):  # ~name of no user: it would make a folder named so
            raise ValueError(f"no home folder for {home.split('/')[0]}; {URL_FORMS}")
        resolved = resolved.set(database=home)
    if resolved.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"unsupported database {resolved.get_backend_name()!r}: use sqlite:///PATH "
            "or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
        )
    if resolved.drivername == "postgresql":  # SQLAlchemy's default driver, psycopg2, is
        resolved = resolved.set(drivername="postgresql+psycopg")  # not installed: psycopg is
    if resolved.get_backend_name() == "postgresql" and resolved.get_driver_name() != "psycopg":
        raise ValueError(f"driver {resolved.get_driver_name()!r} is not supported: use "
                         "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB")
    if resolved.get_backend_name() == "sqlite" and resolved.query:
        raise ValueError(f"an SQLite database takes no options ({'&'.join(resolved.query)}): "
                         "give its file, PATH or sqlite:///PATH")
    return resolved


def results_url(url: str | None = None) -> URL:
    """`resolve_url` for a results database that workers and reports share: also a
    ValueError for an in-memory SQLite database, which lives and dies with one process
    (each worker would get an empty one of its own)."""
    resolved = resolve_url(url)
    if resolved.get_backend_name() == "sqlite" and sqlite_path(resolved) is None:
        raise ValueError("an in-memory database lives and dies with one process; corrgd's "
                         "workers and reports need a file: PATH or sqlite:///PATH")
    return resolved


def driver_error(error: Exception) -> str:
    """A database driver's error in one line, without SQLAlchemy's SQL and link: what the
    driver said (an SQLite file that is no database says so)."""
    said = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = said[0] if said else type(error).__name__
    if isinstance(getattr(error, "orig", None), sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text):
        return f"not an SQLite database, or a damaged one ({text})"
    return f"{type(getattr(error, 'orig', None) or error).__name__}: {text}"


def make_engine(url: str | URL | None = None, *, readonly: bool = False) -> Engine:
    """Create an engine for ``url`` (see :func:`resolve_url`), configured per backend.

    ``readonly``: for commands that only read; an SQLite file must exist already
    (:class:`MissingDatabase` otherwise) and is opened read-only, creating nothing; on
    PostgreSQL every transaction is read-only.
    """
    resolved = resolve_url(url)
    if resolved.get_backend_name() == "sqlite":
        return _sqlite_readonly_engine(resolved) if readonly else _sqlite_engine(resolved)
    # No pool_pre_ping: a pooled connection the server dropped fails the transaction,
    # which is then retried on a fresh connection (see retry.py), without a round
    # trip before every transaction.
    connect_args = {"options": _with_option(resolved, "-c default_transaction_read_only=on")
                    } if readonly else {}
    return create_engine(resolved, json_serializer=dumps_jsonable, connect_args=connect_args)


def _with_option(url: URL, option: str) -> str:
    """The URL's libpq `options` (e.g. ``-csearch_path=...``) and `option` after them."""
    given = url.query.get("options", ())
    return " ".join([*([given] if isinstance(given, str) else given), option])


def sqlite_path(url: URL) -> Path | None:
    """The file of an SQLite URL (None in memory)."""
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_readonly_engine(url: URL) -> Engine:
    path = sqlite_path(url)
    if path is None:
        return _sqlite_engine(url)
    if path.is_dir():
        raise MissingDatabase(f"{path} is a folder, not a results database file")
    if not path.is_file():
        raise MissingDatabase(f"no results database at {path}: a corrgd sweep or worker "
                              "creates it")
    if unwritable(path) is None:
        # A connection that could write, told not to (query_only): as the last one to close,
        # it removes the -wal and -shm files reading made; a mode=ro one cannot.
        url_text, pragmas = f"sqlite:///{path.resolve()}", ["PRAGMA query_only = ON"]
    else:
        # A WAL database is read through its -shm file. Where there is none and SQLite
        # cannot create one (a read-only file system, another user's folder), nobody is
        # writing, so the file is read as immutable; otherwise the open would fail.
        no_shm = not Path(f"{path}-shm").exists() and (
            _read_only_file_system(path) or not os.access(path.parent, os.W_OK))
        immutable = "&immutable=1" if no_shm else ""
        url_text, pragmas = f"sqlite:///file:{path.resolve()}?mode=ro{immutable}&uri=true", []
    engine = create_engine(url_text, json_serializer=dumps_jsonable)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        for pragma in pragmas:
            dbapi_connection.execute(pragma)

    return engine


def _read_only_file_system(path: Path) -> bool:
    return bool(os.statvfs(nearest_existing(path)).f_flag & os.ST_RDONLY)


def unwritable(path: Path) -> str | None:
    """Why results cannot be written to the SQLite file `path`, or None if they can."""
    if path.is_dir():
        return "it is a folder; give a file, e.g. results/corrgd.sqlite"
    if _read_only_file_system(path):
        return "it is on a read-only file system"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is write-protected"
    folder = nearest_existing(path.parent)
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable (SQLite writes a -wal file beside it)"
    return None


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL mode. Connections that switch a fresh file at the same moment
    (workers starting on a new database) can get "database is locked" at once, without
    SQLite's busy wait: retry, within the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: URL) -> Engine:
    if (path := sqlite_path(url)) is not None:
        if problem := unwritable(path):
            raise ReadOnlyDatabase(f"cannot write results to {path}: {problem}" + (
                "; commands that only read (status, runs, report) still work"
                if path.is_file() else ""))
        if path.is_file() and path.stat().st_size:
            # look before writing: a connection for writes switches the file to WAL
            # mode, which must not happen to another application's file
            from corrgd.storage.migrate import check_not_foreign

            probe = _sqlite_readonly_engine(url)
            try:
                check_not_foreign(probe)
            finally:
                probe.dispose()
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_serializer=dumps_jsonable)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin hook below emit BEGIN itself (the sqlite3 module's
        # implicit, deferred BEGIN would make lock upgrades fail without waiting).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        # WAL + NORMAL: never corrupts; a power cut may lose the last commits.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
