"""Small database helpers shared by the apps (no business logic)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from django.db import connection, transaction


def savepoint_if_nested() -> AbstractContextManager:
    """For a single write: a savepoint inside a caller's transaction, so a failure leaves that transaction
    usable; nothing in autocommit, where the statement is its own transaction (no BEGIN/COMMIT round trips)."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()
