"""Another database session, as a second process would have one: for tests of what a transaction holds locked."""

from __future__ import annotations

import psycopg
from django.db import connection


def other_session() -> psycopg.Connection:
    """A separate autocommit connection to the test database that gives up on a lock after a second."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg.connect(**params, autocommit=True)
    other.execute("SET lock_timeout = '1s'")
    return other


def can_lock(session: psycopg.Connection, table: str, pk: int) -> bool:
    """Whether `session` can lock the row at once (FOR NO KEY UPDATE NOWAIT), as another service would."""
    try:
        with session.transaction():
            session.execute(f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [pk])
        return True
    except psycopg.errors.LockNotAvailable:
        return False
