"""The stock page: role scoping, the figures and their bar, and a constant number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory import services
from portal.roles import Role
from tests.inventory import factories

ALLOWED = [Role.WAREHOUSE_SUPERVISOR, Role.PROCUREMENT, Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN]
REFUSED = [Role.FINANCE, Role.TRANSPORTATION, Role.IT_SUPPORT]


@pytest.fixture
def stocked(warehouse, pick_a, pick_b, item):
    level = factories.stock(item, pick_a, 100)
    factories.stock(item, pick_b, 20)
    services.reservation_reserve_lines(
        warehouse=warehouse, demands=[factories.demand(1, item, 30)], actor=factories.ACTOR, reason="Allocated"
    )
    services.stock_quarantine(stock_level=level, quantity=10, actor=factories.ACTOR, reason="Damaged cartons")
    return level


@pytest.mark.parametrize("role", ALLOWED)
def test_stock_roles_see_the_page(role, client, user_with_role, stocked):
    client.force_login(user_with_role(role))
    assert client.get(reverse("inventory:stock-list")).status_code == 200


@pytest.mark.parametrize("role", [*REFUSED, None])
def test_other_roles_are_refused(role, client, user_with_role, stocked):
    client.force_login(user_with_role(*([role] if role else [])))
    assert client.get(reverse("inventory:stock-list")).status_code == 403


def test_per_item_and_per_location_figures_with_a_bar(client, user_with_role, stocked):
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))
    per_item = client.get(reverse("inventory:stock-list")).content.decode()
    # 120 on hand, 30 reserved (walk order: A-01 first), 10 quarantined → 80 available
    assert "120 on hand" not in per_item  # figures sit in cells, the bar carries them in words
    assert 'aria-label="30 reserved, 10 quarantined, 80 available of 120"' in per_item
    assert "2 locations" in per_item
    per_location = client.get(reverse("inventory:stock-list"), {"by": "location", "warehouse": "DCI"}).content.decode()
    assert 'aria-label="30 reserved, 10 quarantined, 60 available of 100"' in per_location
    assert 'style="width: 30%"' in per_location and 'style="width: 10%"' in per_location
    nothing = client.get(reverse("inventory:stock-list"), {"q": "no-such-sku"}).content.decode()
    assert "No stock matches" in nothing


def _queries(client, params) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("inventory:stock-list"), params).status_code == 200
    return len(captured)


@pytest.mark.parametrize("by", ["item", "location"])
def test_constant_queries_whatever_the_page_size_and_data(by, client, user_with_role, warehouse, pick_a, stocked):
    client.force_login(user_with_role(Role.PROCUREMENT))
    _queries(client, {"by": by})
    few = _queries(client, {"by": by, "size": 25})
    for n in range(40):
        factories.stock(factories.ItemFactory(sku=f"MORE-{n}"), pick_a, n + 1)
    many = _queries(client, {"by": by, "size": 100})
    assert few == many
