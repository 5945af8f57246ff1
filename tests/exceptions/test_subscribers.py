"""Cases raised and closed by the core's events, in the transaction of the change that caused them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from exceptions.models import Case
from inventory import services as inventory
from orchestration import services as orchestration
from orchestration.models import Order, Task
from portal.timeline import entries_for
from tests.exceptions import factories
from tests.exceptions.factories import SYSTEM


def test_a_case_rolls_back_with_its_cause(customer, warehouse):
    factories.stocked_item(warehouse, sku="ROLL", quantity=10)
    order = factories.processed_order(customer, warehouse, [("ROLL", 10)])
    task = Task.objects.get(order=order, kind="pick")
    orchestration.task_dispatch(task=task, actor=SYSTEM)
    with pytest.raises(RuntimeError), transaction.atomic():
        orchestration.task_complete(task=task, actor=SYSTEM, done_quantity=4)
        assert Case.objects.filter(type__code="short_pick").exists()
        raise RuntimeError("the pick's transaction fails")
    assert not Case.objects.exists()


def test_a_second_short_pick_on_the_same_line_is_an_occurrence(customer, warehouse):
    factories.stocked_item(warehouse, sku="TWICE", quantity=100)
    order = factories.processed_order(customer, warehouse, [("TWICE", 10)])
    line = order.lines.get()
    task = Task.objects.get(order=order, kind="pick")
    orchestration.task_dispatch(task=task, actor=SYSTEM)
    orchestration.task_complete(task=task, actor=SYSTEM, done_quantity=6)
    case = Case.objects.get(type__code="short_pick")
    orchestration.order_line_reallocate(line=line, actor=SYSTEM, reason="try again")
    retry = Task.objects.get(order=order, kind="pick", status="created")
    orchestration.task_dispatch(task=retry, actor=SYSTEM)
    orchestration.task_complete(task=retry, actor=SYSTEM, done_quantity=1)
    assert Case.objects.filter(type__code="short_pick").count() == 1
    case.refresh_from_db()
    assert case.occurrences == 2 and case.context["shortfall"] == 3


def test_key_account_short_pick_over_the_threshold_routes_by_the_seeded_rule(warehouse):
    key = factories.CustomerFactory(code="bigco", service_tier="key_account")
    factories.stocked_item(warehouse, sku="PRICEY", quantity=1000, value="100.00")
    factories.short_pick(key, warehouse, "PRICEY", 100, 10)  # 90 × 100.00 missing
    case = Case.objects.get(type__code="short_pick")
    assert (case.customer_tier, case.materiality, case.priority) == ("key_account", Decimal("9000.00"), 4)
    assert case.routed_by.name == "Key-account short picks over 5,000"
    assert case.warehouse == warehouse


def test_backorder_filled_auto_resolves_the_partial_shipment_decision(warehouse):
    whole = factories.CustomerFactory(code="whole", allows_split_shipment=False)
    item = factories.ItemFactory(sku="LATE")
    order = factories.processed_order(whole, warehouse, [("LATE", 5)])
    assert order.status == Order.Status.BACKORDERED
    case = Case.objects.get(type__code="partial_shipment_decision")
    assert case.context["outcome"] == "backordered"
    factories.stock(item, factories.location(warehouse, "A-09"), 10)
    orchestration.orders_fill_backorders(item_id=item.pk, warehouse_id=warehouse.pk, actor=SYSTEM)
    case.refresh_from_db()
    assert (case.status, case.resolution_code) == ("auto_resolved", "cause_cleared")
    assert case.resolution_note.startswith(f"Cause cleared: {order.number} is fully allocated now")


def test_split_friendly_customers_get_no_partial_shipment_case(customer, warehouse):
    factories.ItemFactory(sku="LATE2")
    factories.processed_order(customer, warehouse, [("LATE2", 5)])
    assert not Case.objects.filter(type__code="partial_shipment_decision").exists()


def test_credit_released_outside_the_case_auto_resolves_it(warehouse, item):
    tight = factories.CustomerFactory(code="tight", credit_limit=Decimal("0"))
    order = factories.processed_order(tight, warehouse, [(item.sku, 1)])
    orchestration.order_release_credit_hold(order=order, actor=SYSTEM, reason="Paid at the counter")
    case = Case.objects.get(type__code="credit_hold")
    assert case.status == "auto_resolved"


def test_order_cancelled_closes_its_order_bound_cases(warehouse, item):
    tight = factories.CustomerFactory(code="tight", credit_limit=Decimal("0"))
    order = factories.processed_order(tight, warehouse, [(item.sku, 1)])
    unrelated = factories.processed_order(tight, warehouse, [(item.sku, 2)])
    orchestration.order_cancel(order=order, actor=SYSTEM, reason="Customer withdrew")
    assert Case.objects.get(order_number=order.number).status == "auto_resolved"
    assert Case.objects.get(order_number=unrelated.number).status == "open"


def test_address_fixed_outside_the_case_clears_it_when_the_order_continues(customer, warehouse, item):
    order = factories.processed_order(customer, warehouse, [(item.sku, 1)], ship_to={**factories.SHIP_TO, "name": ""})
    case = Case.objects.get(type__code="address_invalid")
    orchestration.order_update_ship_to(order=order, ship_to={"name": "Ann"}, actor=SYSTEM, reason="Phoned")
    orchestration.order_unhold(order=order, actor=SYSTEM, reason="Address complete")
    case.refresh_from_db()
    assert case.status == "auto_resolved"


def test_count_variance_beyond_tolerance_raises_a_case_for_the_counter_to_hand_on(warehouse, item, supervisor):
    from inventory.models import StockLevel

    level = StockLevel.objects.get(item=item)
    count = inventory.count_request(stock_level=level, actor=SYSTEM, reason="Cycle count")
    inventory.count_record(count=count, counted_quantity=100, actor=factories.as_user(supervisor))
    assert not Case.objects.exists()  # no difference, no case
    count = inventory.count_request(stock_level=level, actor=SYSTEM, reason="Cycle count")
    inventory.count_record(count=count, counted_quantity=97, actor=factories.as_user(supervisor))
    case = Case.objects.get(type__code="count_variance")
    assert (case.subject_id, case.raised_by, case.materiality) == (str(count.pk), "user:sam", Decimal("30.00"))


def test_cases_appear_on_the_order_timeline_with_bounded_queries(warehouse, item, django_assert_max_num_queries):
    from exceptions.timeline import cases_for_order

    tight = factories.CustomerFactory(code="tight", credit_limit=Decimal("0"))
    order = factories.processed_order(tight, warehouse, [(item.sku, 1)])
    orchestration.order_cancel(order=order, actor=SYSTEM, reason="Customer withdrew")
    with django_assert_max_num_queries(3):
        entries = cases_for_order(order)
    titles = [entry.title for entry in entries]
    assert titles[0].startswith("Credit hold case #") and "raised in the Finance queue" in titles[0]
    assert titles[-1].endswith("closed automatically: the cause disappeared")
    assert entries[-1].actor == "system:test" and "Customer withdrew" in entries[-1].detail
    assert any(entry.kind == "case" for entry in entries_for(order))


def test_a_receipt_with_two_lines_beyond_tolerance_is_one_case(warehouse, item):
    second = factories.ItemFactory(sku="SECOND", unit_value=Decimal("5.00"))
    dock = factories.location(warehouse, "DOCK-9")
    receipt = inventory.receipt_create(
        number="ASN-2",
        warehouse=warehouse,
        supplier="Acme",
        lines=[{"item": item, "expected_quantity": 10}, {"item": second, "expected_quantity": 10}],
        actor=SYSTEM,
        reason="ASN",
    )
    for line in receipt.lines.all():
        inventory.receipt_receive_line(line=line, quantity=5, location=dock, actor=SYSTEM)
    inventory.receipt_close(receipt=receipt, actor=SYSTEM, reason="Unloaded")
    case = Case.objects.get(type__code="receiving_variance")
    assert case.occurrences == 2
    assert set(case.context["lines"]) == {"1", "2"}
    assert case.materiality == Decimal("75.00")  # the receipt's: 5 × 10.00 + 5 × 5.00
