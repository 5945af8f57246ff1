"""Small database helpers shared by the apps (no business logic)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from django.db import connection, transaction


def savepoint_if_nested() -> AbstractContextManager:
    """For a single write: a savepoint inside a caller's transaction, so a failure leaves that transaction
    usable; nothing in autocommit, where the statement is its own transaction (no BEGIN/COMMIT round trips)."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def trigram_index(*expressions, name: str):
    """A GIN index of the trigrams of upper-cased text: what ``icontains`` and ``istartswith`` filters
    (``UPPER(column::text) LIKE …`` on PostgreSQL) search through instead of reading every row.
    Its migration needs the pg_trgm extension (``TrigramExtension()`` before it)."""
    from django.contrib.postgres.indexes import GinIndex, OpClass

    return GinIndex(*(OpClass(expression, name="gin_trgm_ops") for expression in expressions), name=name)
