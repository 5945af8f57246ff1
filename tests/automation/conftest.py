"""Fixtures for automation tests: one warehouse with a machine zone (AMR) and a manual zone (A)."""

from __future__ import annotations

import pytest

from tests.automation import factories


@pytest.fixture
def warehouse(db):
    return factories.WarehouseFactory(code="DCT")


@pytest.fixture
def customer(db):
    return factories.CustomerFactory(code="acme")


@pytest.fixture
def amr_item(warehouse):
    """An item stocked only in the AMR zone."""
    return factories.stocked_item(warehouse, zone="AMR", sku="AMR-ITEM")


@pytest.fixture
def manual_item(warehouse):
    """An item stocked only in zone A (people pick it)."""
    return factories.stocked_item(warehouse, zone="A", sku="MAN-ITEM")


@pytest.fixture
def wcs_partner(db):
    """The WCS partner outbound work instructions go to."""
    from integrations.models import Partner

    return Partner.objects.get_or_create(
        code="wcs",
        defaults={
            "name": "Warehouse control system",
            "kind": Partner.Kind.WCS,
            "scopes": ["events:write"],
            "webhook_secret": "test-secret",
            "outbound_base_url": "http://127.0.0.1:9/wcs",
        },
    )[0]
