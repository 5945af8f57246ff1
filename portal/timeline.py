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
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "order" | "reservation" | "task" | "shipment" | "case" | "message" | "rule" | "event" …
    title: str  # plain words: "Pick task 123 short by 2 at A-01-02"
    actor: str = ""  # actor label: "user:sam", "partner:erp", "rule:…", "system:…"
    detail: str = ""  # the reason or a short explanation
    url: str = ""
    extra: dict = field(default_factory=dict)


_sources: dict[str, Callable] = {}


def register_source(name: str, source: Callable) -> None:
    """Add (or replace) the source called `name`."""
    _sources[name] = source


def entries_for(order) -> list[TimelineEntry]:
    """Every source's entries for `order`, oldest first."""
    entries: list[TimelineEntry] = []
    for source in _sources.values():
        entries.extend(source(order))
    return sorted(entries, key=lambda entry: entry.at)
