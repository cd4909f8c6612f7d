"""Alembic environment for the corrgd results database.

``corrgd.storage.migrate.upgrade`` passes an open connection (inside a
transaction holding the write lock) as ``config.attributes["connection"]``.
When run from the ``alembic`` command line the database is taken from
``sqlalchemy.url`` in the ini file, else ``$CORRGD_DB``, else the default.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from corrgd.storage.engine import WRITE_OPTIONS, make_engine, resolve_url
from corrgd.storage.models import Base

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: future migrations use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite does support transactional DDL: one migration is all or nothing.
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = resolve_url(config.get_main_option("sqlalchemy.url"))
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn:
            run_on(conn)
            conn.commit()
    finally:
        engine.dispose()


main()
