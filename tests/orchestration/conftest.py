"""Fixtures for order tests: a warehouse with two stocked items and a customer that may split shipments."""

from __future__ import annotations

import pytest

from tests.inventory import factories as stock_factories
from tests.orchestration import factories


@pytest.fixture
def warehouse(db):
    return stock_factories.WarehouseFactory(code="DCO")


@pytest.fixture
def location_a(warehouse):
    return stock_factories.LocationFactory(warehouse=warehouse, code="A-01", zone="A", pick_sequence=10)


@pytest.fixture
def location_b(warehouse):
    return stock_factories.LocationFactory(warehouse=warehouse, code="B-01", zone="B", pick_sequence=20)


@pytest.fixture
def tape(location_a):
    item = stock_factories.ItemFactory(sku="TAPE")
    stock_factories.stock(item, location_a, 100)
    return item


@pytest.fixture
def gloves(location_b):
    item = stock_factories.ItemFactory(sku="GLOVES")
    stock_factories.stock(item, location_b, 50)
    return item


@pytest.fixture
def customer(db):
    return factories.CustomerFactory(code="acme")
