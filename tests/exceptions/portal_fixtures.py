"""Fixtures of the queue pages, the live updates and the queue API: people in roles and cases raised
through the domain service (so every case comes with its queue change and sequence number)."""

from __future__ import annotations

import itertools
import uuid

import pytest

from portal.actors import Actor
from portal.roles import Role

_subjects = itertools.count(1)


@pytest.fixture
def seeded(db, settings):
    """The default queues and exception types (flushed away in transactional tests, so seed again).

    Queue counts are cached per queue sequence, and a rolled-back test leaves the next one the same
    numbers: each test gets a cache key prefix of its own (parallel workers share the Redis database).
    """
    from exceptions.seed import seed_defaults

    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"portal-test-{uuid.uuid4().hex}"
    settings.CACHES = caches
    seed_defaults()


@pytest.fixture
def supervisor(seeded, user_with_role):
    return user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam-supervisor")


@pytest.fixture
def other_supervisor(seeded, user_with_role):
    return user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sid-supervisor")


@pytest.fixture
def finance_user(seeded, user_with_role):
    return user_with_role(Role.FINANCE, username="fran-finance")


def raise_case(type_code: str = "short_pick", **fields):
    """A case raised by the WMS through ``case_raise`` (a fresh subject unless one is given)."""
    from exceptions.services import case_raise

    number = next(_subjects)
    values = {
        "subject_type": "orchestration.task",
        "subject_id": str(900_000 + number),
        "subject_label": f"Pick task {900_000 + number}",
        "summary": f"Picked 2 of 5 of SKU-{number} at A-01-0{number % 9}",
        "context": {"requested": 5, "picked": 2},
        "actor": Actor.system("wms"),
        "reason": "Picker confirmed short",
    }
    values.update(fields)
    return case_raise(type_code=type_code, **values)


@pytest.fixture
def make_case(seeded):
    return raise_case
