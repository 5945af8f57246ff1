"""Query budgets: allocation costs a small constant plus at most two queries per line."""

from __future__ import annotations

import pytest

from orchestration import services
from orchestration.models import Order
from tests.inventory import factories as stock_factories
from tests.orchestration import factories

ALLOCATION_CONSTANT = (
    20  # 16 today: order lock, lines, the reservation statement, line update, transition, event, subscribers
)


@pytest.mark.parametrize("lines", [1, 10, 50])
def test_allocating_an_order_of_n_lines_costs_a_constant_plus_two_queries_per_line(
    lines, warehouse, location_a, location_b, customer, django_assert_max_num_queries
):
    items = [stock_factories.ItemFactory(sku=f"Q-{n:03d}") for n in range(lines)]
    for index, item in enumerate(items):
        # every other item is split over two locations, so some lines take two reservations
        stock_factories.stock(item, location_a, 3)
        if index % 2:
            stock_factories.stock(item, location_b, 3)
    order = factories.validated_order(customer, warehouse, [(item.sku, 5) for item in items])

    with django_assert_max_num_queries(ALLOCATION_CONSTANT + 2 * lines):
        services.order_allocate(order=order, actor=factories.ACTOR, reason="Budget check")

    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_ALLOCATED
