"""The order timeline: each app contributes the entries it owns, the page shows them in time order.

An app registers a source in its ``AppConfig.ready``::

    from portal.timeline import register_source
    register_source("exceptions", cases_for_order)

A source is ``fn(order) -> list[TimelineEntry]`` and must issue a bounded number of
queries whatever the order's size (no query per row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from portal.roles import allowed


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "order" | "reservation" | "task" | "shipment" | "case" | "message" | "rule" | "event" …
    title: str  # plain words: "Pick task 123 short by 2 at A-01-02"
    actor: str = ""  # actor label: "user:sam", "partner:erp", "rule:…", "system:…"
    detail: str = ""  # the reason or a short explanation
    url: str = ""
    extra: dict = field(default_factory=dict)
    url_roles: tuple = ()  # who may follow `url` (empty: whoever may see the order)


_sources: dict[str, Callable] = {}


def register_source(name: str, source: Callable) -> None:
    """Add (or replace) the source called `name`."""
    _sources[name] = source


def entries_for(order, *, viewer=None) -> list[TimelineEntry]:
    """Every source's entries for `order`, oldest first; given a `viewer`, without links they may not follow."""
    entries: list[TimelineEntry] = []
    for source in _sources.values():
        entries.extend(source(order))
    if viewer is not None:
        entries = [
            entry if not entry.url_roles or allowed(viewer, *entry.url_roles) else replace(entry, url="")
            for entry in entries
        ]
    return sorted(entries, key=lambda entry: entry.at)
