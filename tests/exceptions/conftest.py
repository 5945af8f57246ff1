"""Fixtures for exception tests: the seeded configuration, a stocked warehouse, a customer, role holders."""

from __future__ import annotations

import pytest

from exceptions.seed import seed_defaults
from portal.roles import Role
from tests.exceptions import factories


@pytest.fixture(autouse=True)
def seeded(db):
    """Queues, SLA policies and types as the data migration seeds them (transactional tests flush them)."""
    seed_defaults()


@pytest.fixture
def warehouse(db):
    return factories.WarehouseFactory(code="EXA")


@pytest.fixture
def other_warehouse(db):
    return factories.WarehouseFactory(code="EXB")


@pytest.fixture
def customer(db):
    return factories.CustomerFactory(code="acme")


@pytest.fixture
def item(warehouse):
    return factories.stocked_item(warehouse, sku="WIDGET", quantity=100, value="10.00")


@pytest.fixture
def supervisor(db):
    return factories.person(Role.WAREHOUSE_SUPERVISOR, username="sam")


@pytest.fixture
def supervisor2(db):
    return factories.person(Role.WAREHOUSE_SUPERVISOR, username="sue")


@pytest.fixture
def service(db):
    return factories.person(Role.CUSTOMER_SERVICE, username="casey")


@pytest.fixture
def finance(db):
    return factories.person(Role.FINANCE, username="fran")


@pytest.fixture
def procurement(db):
    return factories.person(Role.PROCUREMENT, username="pat")


@pytest.fixture
def opsadmin(db):
    return factories.person(Role.OPERATIONS_ADMIN, username="olu")
