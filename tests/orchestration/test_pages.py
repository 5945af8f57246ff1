"""The order pages: who may see them, what they show, and a constant number of queries whatever the data size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.models import CarrierCutoff
from orchestration import selectors, services
from orchestration.models import Order
from portal.roles import Role
from tests.inventory import factories as stock_factories
from tests.orchestration import factories

ALLOWED = [Role.CUSTOMER_SERVICE, Role.WAREHOUSE_SUPERVISOR, Role.FINANCE, Role.TRANSPORTATION, Role.OPERATIONS_ADMIN]
REFUSED = [Role.PROCUREMENT, Role.IT_SUPPORT]


@pytest.fixture
def released(warehouse, customer, tape, gloves):
    order = factories.processed_order(customer, warehouse, [("TAPE", 5), ("GLOVES", 2)], external_ref="PO-4711")
    assert order.status == Order.Status.RELEASED
    return order


def _signed_in(client, user_with_role, *roles, **fields):
    client.force_login(user_with_role(*roles, **fields))
    return client


def _row_link(order) -> str:
    """How the list links an order's row (its number alone may also be the search box's example)."""
    return f'href="{reverse("orchestration:order-detail", args=[order.number])}"'


@pytest.mark.parametrize("role", ALLOWED)
def test_order_roles_see_the_list_and_the_detail(role, client, user_with_role, released):
    _signed_in(client, user_with_role, role)
    assert client.get(reverse("orchestration:order-list")).status_code == 200
    assert client.get(reverse("orchestration:order-detail", args=[released.number])).status_code == 200


@pytest.mark.parametrize("role", [*REFUSED, None])
def test_other_roles_are_refused(role, client, user_with_role, released):
    _signed_in(client, user_with_role, *([role] if role else []))
    assert client.get(reverse("orchestration:order-list")).status_code == 403
    assert client.get(reverse("orchestration:order-detail", args=[released.number])).status_code == 403
    url = reverse("orchestration:order-action", args=[released.number, "cancel"])
    assert client.post(url, {"reason": "x"}).status_code == 403
    released.refresh_from_db()
    assert released.status == Order.Status.RELEASED


def test_signed_out_visitors_are_sent_to_the_login(client, released):
    response = client.get(reverse("orchestration:order-list"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_list_shows_status_badges_due_and_cutoff_and_filters(client, user_with_role, warehouse, customer, released):
    CarrierCutoff.objects.create(warehouse=warehouse, carrier="DHL", service_level="standard", cutoff_time="15:30")
    held = factories.order_for(customer, warehouse, [("TAPE", 1)], external_ref="PO-HOLD", carrier="DHL")
    services.order_validate(order=held, actor=factories.ACTOR)
    services.order_hold(order=held, actor=factories.ACTOR, reason="Customer asked to wait")
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)

    page = client.get(reverse("orchestration:order-list")).content.decode()
    assert 'data-status="released"' in page and 'data-status="on_hold"' in page
    assert "Released to warehouse" in page and "On hold" in page
    assert "today" in page and "15:30" in page

    filtered = client.get(reverse("orchestration:order-list"), {"status": "on_hold"}).content.decode()
    assert _row_link(held) in filtered and _row_link(released) not in filtered
    searched = client.get(reverse("orchestration:order-list"), {"q": "PO-4711"}).content.decode()
    assert _row_link(released) in searched and _row_link(held) not in searched

    by_customer = client.get(reverse("orchestration:order-list"), {"customer": "nobody"}).content.decode()
    assert "No orders match" in by_customer
    bad_input = client.get(reverse("orchestration:order-list"), {"ship_date": "yesterday", "page": "x", "size": "9"})
    assert bad_input.status_code == 200


def test_detail_shows_lines_reservations_tasks_and_the_timeline(client, user_with_role, released):
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)
    page = client.get(reverse("orchestration:order-detail", args=[released.number])).content.decode()
    assert "TAPE" in page and "GLOVES" in page
    assert "Reserved 5" in page  # the inventory source: reservation history
    assert "Pick" in page and "A-01" in page
    assert f"Order {released.number}: validated → allocated" in page  # the orchestration source: order history
    assert "Allocation: allocated" in page  # an order event
    assert "system:test" in page


@pytest.mark.parametrize("role, linked", [(Role.FINANCE, True), (Role.CUSTOMER_SERVICE, False)])
def test_the_timeline_links_a_case_only_for_those_who_work_its_queue(
    role, linked, client, user_with_role, warehouse, tape
):
    from decimal import Decimal

    from exceptions.models import Case

    tight = factories.CustomerFactory(code="tight", credit_limit=Decimal("10"))
    order = factories.processed_order(tight, warehouse, [("TAPE", 3)])
    case = Case.objects.get(order_number=order.number, type__code="credit_hold")  # the finance queue's
    _signed_in(client, user_with_role, role)

    page = client.get(reverse("orchestration:order-detail", args=[order.number])).content.decode()

    assert f"Credit hold case #{case.pk} raised" in page
    assert (f'href="{reverse("exceptions:case-detail", args=[case.pk])}"' in page) is linked


def test_a_superuser_follows_the_timeline_to_any_case_as_to_every_other_page(client, user_with_role, warehouse, tape):
    from decimal import Decimal

    from exceptions.models import Case
    from portal.live import groups_for_user, role_group

    tight = factories.CustomerFactory(code="tight", credit_limit=Decimal("10"))
    order = factories.processed_order(tight, warehouse, [("TAPE", 3)])
    case = Case.objects.get(order_number=order.number, type__code="credit_hold")
    root = user_with_role(username="root", is_superuser=True, is_staff=True)  # holds no role
    client.force_login(root)
    case_url = reverse("exceptions:case-detail", args=[case.pk])

    page = client.get(reverse("orchestration:order-detail", args=[order.number])).content.decode()

    assert f'href="{case_url}"' in page
    assert client.get(case_url).status_code == 200
    assert client.get(reverse("exceptions:queue-detail", args=[case.queue.code])).status_code == 200
    assert role_group(Role.FINANCE) in groups_for_user(root)  # and the queue's live hints reach them


def test_the_timeline_says_what_a_change_changed(client, user_with_role, released):
    services.order_set_priority(order=released, priority=4, actor=factories.ACTOR, reason="Customer escalated")
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)

    page = client.get(reverse("orchestration:order-detail", args=[released.number])).content.decode()

    assert f"Order {released.number}: priority Normal → Urgent" in page
    assert "Customer escalated" in page


def test_a_short_order_shows_the_stock_on_its_way_and_free_elsewhere(client, user_with_role, warehouse, customer, tape):
    from inventory import services as inventory

    bolts = stock_factories.ItemFactory(sku="BOLTS")
    elsewhere = stock_factories.LocationFactory(warehouse=stock_factories.WarehouseFactory(code="DCX"), code="X-01")
    stock_factories.stock(bolts, elsewhere, 30)
    for number, status in [("ASN-1", None), ("ASN-GONE", "cancel"), ("ASN-DONE", "receive")]:
        receipt = inventory.receipt_create(
            number=number,
            warehouse=warehouse,
            supplier="Bolt & Co",
            lines=[{"item": bolts, "expected_quantity": 10}],
            actor=factories.ACTOR,
            reason="ASN received",
        )
        if status == "cancel":
            inventory.receipt_cancel(receipt=receipt, actor=factories.ACTOR, reason="Supplier withdrew it")
        elif status == "receive":
            dock = stock_factories.LocationFactory(warehouse=warehouse, code="DOCK", kind="dock")
            inventory.receipt_receive_line(line=receipt.lines.get(), quantity=10, location=dock, actor=factories.ACTOR)
    order = factories.processed_order(customer, warehouse, [("TAPE", 2), ("BOLTS", 25)])
    assert order.status in selectors.SHORTAGE_STATES
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)

    response = client.get(reverse("orchestration:order-detail", args=[order.number]))

    (shortage,) = response.context["shortages"]
    assert (shortage.line.item.sku, shortage.missing, shortage.elsewhere) == ("BOLTS", 25, {"DCX": 30})
    assert shortage.inbound == [{"receipt": "ASN-1", "supplier": "Bolt & Co", "status": "Expected", "outstanding": 10}]
    page = response.content.decode()
    assert "Still short" in page and "10 on ASN-1" in page and "10 of 25 covered" in page and "30 at DCX" in page


def test_an_order_put_on_hold_while_short_still_shows_what_it_is_short_of(
    client, user_with_role, warehouse, customer, tape
):
    bolts = stock_factories.ItemFactory(sku="BOLTS")
    stock_factories.stock(bolts, stock_factories.LocationFactory(warehouse=warehouse, code="B-01"), 5)
    customer.allows_split_shipment = False  # so the short order waits instead of releasing what it has
    customer.save(update_fields=["allows_split_shipment"])
    order = factories.processed_order(customer, warehouse, [("TAPE", 2), ("BOLTS", 8)])
    services.order_hold(order=order, actor=factories.ACTOR, reason="Customer asked to wait")
    order.refresh_from_db()
    assert order.status == Order.Status.ON_HOLD and order.held_from in selectors.SHORTAGE_STATES
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)

    response = client.get(reverse("orchestration:order-detail", args=[order.number]))

    (shortage,) = response.context["shortages"]
    assert (shortage.line.item.sku, shortage.missing) == ("BOLTS", 3)


def test_an_order_short_of_nothing_shows_no_shortage_panel(client, user_with_role, released):
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)
    response = client.get(reverse("orchestration:order-detail", args=[released.number]))
    assert response.context["shortages"] == [] and "Still short" not in response.content.decode()


def test_unknown_order_is_404(client, user_with_role, db):
    _signed_in(client, user_with_role, Role.FINANCE)
    assert client.get(reverse("orchestration:order-detail", args=["SO-NOPE"])).status_code == 404


def test_customer_service_holds_an_order_with_a_reason_through_the_service(
    client, user_with_role, warehouse, customer, tape
):
    order = factories.validated_order(customer, warehouse, [("TAPE", 1)])
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE, username="casey")
    url = reverse("orchestration:order-action", args=[order.number, "hold"])

    refused = client.post(url, {"reason": " "}, follow=True)
    assert "A reason is required" in refused.content.decode()
    order.refresh_from_db()
    assert order.status == Order.Status.VALIDATED

    client.post(url, {"reason": "Customer called: wait for PO change"})
    order.refresh_from_db()
    assert order.status == Order.Status.ON_HOLD
    latest = order.history.latest("history_id")
    assert (latest.history_actor, latest.history_reason) == ("user:casey", "Customer called: wait for PO change")


def test_finance_may_not_cancel_an_order(client, user_with_role, released):
    _signed_in(client, user_with_role, Role.FINANCE)
    assert (
        client.post(
            reverse("orchestration:order-action", args=[released.number, "cancel"]), {"reason": "x"}
        ).status_code
        == 403
    )


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return len(captured)


def test_list_issues_the_same_number_of_queries_whatever_the_page_size_and_data(
    client, user_with_role, warehouse, customer, tape
):
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)
    url = reverse("orchestration:order-list")
    factories.order_for(customer, warehouse, [("TAPE", 1)])
    _queries(client, url)  # warm the session and role caches
    few = _queries(client, url, {"size": 25})
    other_warehouse = stock_factories.WarehouseFactory(code="DCX")
    for n in range(30):
        factories.order_for(
            factories.CustomerFactory(code=f"c{n}"), other_warehouse if n % 2 else warehouse, [("TAPE", 1 + n % 3)]
        )
    many = _queries(client, url, {"size": 100})
    filtered = _queries(client, url, {"size": 25, "warehouse": "DCO", "status": "received", "q": "SO"})
    assert few == many == filtered


def test_detail_issues_the_same_number_of_queries_for_a_small_and_a_big_order(
    client, user_with_role, warehouse, location_a, customer, tape
):
    _signed_in(client, user_with_role, Role.WAREHOUSE_SUPERVISOR)
    small = factories.processed_order(customer, warehouse, [("TAPE", 1)])
    items = [stock_factories.ItemFactory(sku=f"BIG-{n}") for n in range(12)]
    for item in items:
        stock_factories.stock(item, location_a, 5)
    big = factories.processed_order(customer, warehouse, [(item.sku, 2) for item in items])
    assert small.status == big.status == Order.Status.RELEASED
    _queries(client, reverse("orchestration:order-detail", args=[small.number]))
    assert _queries(client, reverse("orchestration:order-detail", args=[small.number])) == _queries(
        client, reverse("orchestration:order-detail", args=[big.number])
    )


def test_the_shortage_panel_costs_the_same_queries_for_one_short_line_or_many(
    client, user_with_role, warehouse, customer, location_a
):
    _signed_in(client, user_with_role, Role.CUSTOMER_SERVICE)
    items = [stock_factories.ItemFactory(sku=f"SHORT-{n}") for n in range(6)]
    for item in items:
        stock_factories.stock(item, location_a, 1)
    one = factories.processed_order(customer, warehouse, [("SHORT-0", 5)])
    many = factories.processed_order(customer, warehouse, [(item.sku, 5) for item in items])
    one_url = reverse("orchestration:order-detail", args=[one.number])
    many_url = reverse("orchestration:order-detail", args=[many.number])
    _queries(client, one_url)
    assert len(client.get(many_url).context["shortages"]) == 6
    assert _queries(client, one_url) == _queries(client, many_url)
