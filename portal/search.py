"""Finding a record by its number or code from the top bar: each app answers for what it owns.

An app registers a source in its ``AppConfig.ready``::

    from portal.search import register_source
    register_source("orchestration", find)

A source is ``fn(term, user) -> list[Hit]``: only records `user` may open, at most ``HITS_PER_SOURCE``,
found by their own number or code (exact, or a prefix of a code in a small reference table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_TERM = 64
HITS_PER_SOURCE = 10


@dataclass(frozen=True)
class Hit:
    kind: str  # what it is, in words: "Order", "Case", "Item"
    label: str  # its number or code
    url: str
    detail: str = ""
    exact: bool = False  # the term is this record's own number or code: one such hit is opened straight away


_sources: dict[str, Callable] = {}


def register_source(name: str, source: Callable) -> None:
    """Add (or replace) the source called `name`."""
    _sources[name] = source


def clean_term(term: str) -> str:
    return (term or "").replace("\x00", "").strip()[:MAX_TERM]


def find(term: str, user) -> list[Hit]:
    """Every source's hits for `term`, exact ones first."""
    term = clean_term(term)
    if not term:
        return []
    hits = [hit for source in _sources.values() for hit in source(term, user)[:HITS_PER_SOURCE]]
    return sorted(hits, key=lambda hit: not hit.exact)
