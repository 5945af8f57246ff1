"""Fixtures for inventory tests: one warehouse with two pick faces and a reserve rack."""

from __future__ import annotations

import pytest

from inventory.models import Location
from tests.inventory import factories


@pytest.fixture
def warehouse(db):
    return factories.WarehouseFactory(code="DCI")


@pytest.fixture
def pick_a(warehouse):
    return factories.LocationFactory(warehouse=warehouse, code="A-01", zone="A", pick_sequence=10)


@pytest.fixture
def pick_b(warehouse):
    return factories.LocationFactory(warehouse=warehouse, code="B-01", zone="B", pick_sequence=20)


@pytest.fixture
def reserve_rack(warehouse):
    return factories.LocationFactory(
        warehouse=warehouse, code="R-01", zone="RESERVE", kind=Location.Kind.RESERVE, pick_sequence=1000
    )


@pytest.fixture
def item(db):
    return factories.ItemFactory(sku="GLOVE-L")
