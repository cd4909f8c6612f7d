"""A fresh schema of the test PostgreSQL server (CORRGD_TEST_PG_URL) per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, make_url, text

PG_URL = os.environ.get("CORRGD_TEST_PG_URL")


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A URL to an empty schema of the test PostgreSQL server, dropped afterwards."""
    assert PG_URL is not None
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
