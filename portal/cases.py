"""The cases about one record, for the page of the app that owns the record (a receipt, a machine).

The exceptions app answers: it registers its selector in ``AppConfig.ready``, so the apps whose
records cases are about show them without importing the exceptions app::

    from portal.cases import register_source
    register_source(cases_about)

A source is ``fn(subject, *, viewer) -> list`` (a bounded number of queries).
"""

from __future__ import annotations

from collections.abc import Callable

_source: Callable | None = None


def register_source(source: Callable) -> None:
    global _source
    _source = source


def cases_about(subject, *, viewer) -> list:
    """The cases about `subject`, open ones first; empty when no app answers."""
    return _source(subject, viewer=viewer) if _source is not None else []
