"""Bringing a database's schema to the newest Alembic revision shipped with corrgd.

The migration scripts live in ``corrgd/storage/migrations`` and are run
programmatically on an existing connection, inside one transaction that holds
the database's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory
lock), so that several workers opening a fresh database at once migrate it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, Inspector, inspect, text

from corrgd.storage.engine import WRITE_OPTIONS
from corrgd.storage.errors import DamagedDatabase, ForeignDatabase, SchemaTooNew, SchemaTooOld
from corrgd.storage.models import Base

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The revisions of the scripts in migrations/versions, oldest first (a test checks them):
#: commands that only read compare a database with these without loading Alembic.
REVISIONS = ("0001", "0002", "0003", "0004")
_PG_MIGRATION_LOCK = 0x636F7272  # arbitrary advisory-lock key ("corr")


def alembic_config(script_location: str | Path | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    return config


def head_revision(script_location: str | Path | None = None) -> str:
    """The newest revision among the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(script_location)).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _current(engine: Engine) -> str | None:
    """The database's revision; a database that holds tables but no corrgd schema is
    :class:`ForeignDatabase` (corrgd adds its tables only to an empty one), one at the
    newest revision that lacks some of corrgd's tables :class:`DamagedDatabase`."""
    with engine.connect() as connection:
        current = current_revision(connection)
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        missing_columns = _missing_columns(inspector, tables) if current == REVISIONS[-1] \
            else []
        connection.rollback()
    if current is None and tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ForeignDatabase(
            f"holds tables that are not corrgd's ({shown}): give a new file, or an empty "
            "database, for corrgd's results")
    missing = sorted(set(Base.metadata.tables) - tables)
    if current == REVISIONS[-1] and missing:
        raise DamagedDatabase(
            f"corrgd's schema is incomplete: no table {', '.join(missing)} (changed outside "
            "corrgd?); restore the database from a copy, or give a new one")
    if missing_columns:
        raise DamagedDatabase(
            f"corrgd's schema is incomplete: no column {', '.join(missing_columns)} (changed "
            "outside corrgd?); restore the database from a copy, or give a new one")
    return current


def _missing_columns(inspector: Inspector, tables: set[str]) -> list[str]:
    """TABLE.COLUMN of each column of corrgd's `tables` that the database lacks (one query
    for all tables)."""
    mine = sorted(set(Base.metadata.tables) & tables)
    have = {(key[1], column["name"])
            for key, columns in inspector.get_multi_columns(filter_names=mine).items()
            for column in columns}
    return [f"{table}.{c.name}" for table in mine for c in Base.metadata.tables[table].columns
            if (table, c.name) not in have]


def check_not_foreign(engine: Engine) -> None:
    """Raise :class:`ForeignDatabase` if the database is another application's (reads
    only)."""
    _current(engine)


def upgrade(
    engine: Engine, revision: str = "head", *, script_location: str | Path | None = None
) -> None:
    """Upgrade the database behind ``engine`` to ``revision``; a no-op when it is there
    (then without loading Alembic)."""
    current = _current(engine)
    _check_known(current)
    if revision == "head" and script_location is None and current == REVISIONS[-1]:
        return
    from alembic import command

    config = alembic_config(script_location)
    with engine.connect().execution_options(**WRITE_OPTIONS) as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # a table rebuild must not cascade deletes (SQLite's 12-step recipe);
            # the pragma only takes effect outside a transaction
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _PG_MIGRATION_LOCK})
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and connection.exec_driver_sql(
                        "PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("a migration left rows whose parent is gone")
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")


def check_current(engine: Engine) -> None:
    """Raise unless the database is at this corrgd's newest schema (reads only)."""
    current = _current(engine)
    _check_known(current)
    if current is None:
        raise SchemaTooOld("it holds no corrgd results: a corrgd sweep or worker creates them")
    if current != REVISIONS[-1]:
        raise SchemaTooOld("the results database was written by an older corrgd: any "
                           "corrgd sweep or worker upgrades it")


def _check_known(revision: str | None) -> None:
    if revision is not None and revision not in REVISIONS:
        raise SchemaTooNew(
            f"the database is at schema revision {revision!r}, which this corrgd does not "
            "know: it was written by a newer corrgd; upgrade corrgd to open it"
        )
