"""Every resolution action's domain effect, run through the core's services in the case's transaction.

Each test raises the case the way production does (from the core's own events), resolves it as
a person of the right role, and asserts the order / line / reservation / receipt / count after.
A refused resolution changes nothing: neither the domain nor the case.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from exceptions import services
from exceptions.models import Case, QueueChange
from inventory import services as inventory
from inventory.models import CycleCount, Receipt, Reservation, StockLevel
from orchestration import services as orchestration
from orchestration.models import Order, OrderLine, Task
from portal.domain import DomainError, InvalidInput, PermissionRefused, TransitionRefused
from portal.models import DomainEvent
from portal.roles import Role
from tests.exceptions import factories
from tests.exceptions.factories import SYSTEM, as_user


def the_case(type_code: str) -> Case:
    return Case.objects.get(type__code=type_code)


def resolve(case, resolution, user, reason="Decided", **params):
    return services.case_resolve(case=case, resolution=resolution, actor=as_user(user), reason=reason, params=params)


def assert_resolved(case: Case, resolution: str, by: str) -> Case:
    case.refresh_from_db()
    assert (case.status, case.resolution_code, case.resolved_by) == ("resolved", resolution, by)
    assert case.resolution_note
    event = DomainEvent.objects.filter(name="case.resolved", subject_id=str(case.pk)).get()
    assert (event.payload["resolution"], event.actor) == (resolution, by)
    assert QueueChange.objects.filter(case=case).order_by("-pk").first().kind == "removed"
    return case


def assert_untouched(case: Case) -> None:
    case.refresh_from_db()
    assert case.status == "open" and case.resolution_code == ""
    assert not DomainEvent.objects.filter(name="case.resolved", subject_id=str(case.pk)).exists()


# --- short pick ----------------------------------------------------------------------------


@pytest.fixture
def short_task(customer, warehouse):
    """10 ordered, stock of 10 at A-01, 6 found: 4 missing, quarantined and counted."""
    factories.stocked_item(warehouse, sku="SHORTY", quantity=10)
    return factories.short_pick(customer, warehouse, "SHORTY", 10, 6)


def test_short_pick_raises_a_case_about_the_line(short_task):
    case = the_case("short_pick")
    assert (case.subject_type, case.subject_id) == ("orchestration.orderline", str(short_task.order_line_id))
    assert case.order_number == short_task.order.number
    assert case.materiality == Decimal("40.00")
    assert case.context["shortfall"] == 4 and case.context["task_id"] == short_task.pk


def test_reallocate_reserves_the_missing_units_elsewhere_and_adds_a_pick(short_task, warehouse, supervisor):
    case = the_case("short_pick")
    line = OrderLine.objects.get(pk=short_task.order_line_id)
    with pytest.raises(TransitionRefused, match="No other stock of SHORTY"):
        resolve(case, "reallocate", supervisor)
    assert_untouched(case)
    other = factories.location(warehouse, "B-01", sequence=20)
    factories.stock(line.item, other, 5)
    resolve(case, "reallocate", supervisor, reason="Stock in B-01")
    assert_resolved(case, "reallocate", "user:sam")
    line.refresh_from_db()
    assert (line.allocated_quantity, line.picked_quantity) == (4, 6)
    reservation = Reservation.objects.get(order_line_id=line.pk, status="reserved")
    assert (reservation.quantity, reservation.stock_level.location.code) == (4, "B-01")
    new_task = Task.objects.get(order_line=line, status="created")
    assert (new_task.quantity, new_task.location.code) == (4, "B-01")


def test_reallocate_from_another_warehouse_is_validated(short_task, supervisor):
    case = the_case("short_pick")
    with pytest.raises(InvalidInput) as error:
        resolve(case, "reallocate", supervisor, warehouse="NOPE")
    assert error.value.status == 422 and "params.warehouse" in error.value.fields
    assert_untouched(case)


def test_backorder_keeps_the_rest_open(short_task, supervisor):
    case = the_case("short_pick")
    resolve(case, "backorder", supervisor)
    assert_resolved(case, "backorder", "user:sam")
    change = DomainEvent.objects.filter(name="order.line_changed").latest("pk")
    assert (change.payload["change"], change.payload["line_no"]) == ("backordered", 1)
    line = OrderLine.objects.get(pk=short_task.order_line_id)
    assert line.status == OrderLine.Status.BACKORDERED  # the order page says what was decided


def test_ship_partial_ships_what_was_picked(short_task, supervisor):
    case = the_case("short_pick")
    resolve(case, "ship_partial", supervisor)
    assert_resolved(case, "ship_partial", "user:sam")
    line = OrderLine.objects.get(pk=short_task.order_line_id)
    assert (line.status, line.quantity, line.picked_quantity) == ("picked", 6, 6)
    assert Task.objects.filter(order=short_task.order, kind="pack").exists()


def test_cancel_line_cancels_the_missing_rest(short_task, supervisor):
    case = the_case("short_pick")
    resolve(case, "cancel_line", supervisor, reason="Customer cancelled the rest")
    assert_resolved(case, "cancel_line", "user:sam")
    line = OrderLine.objects.get(pk=short_task.order_line_id)
    assert (line.status, line.quantity, line.allocated_quantity) == ("picked", 6, 0)


def test_substitute_only_when_the_customer_accepts_substitutes(short_task, customer, warehouse, supervisor):
    case = the_case("short_pick")
    line = OrderLine.objects.get(pk=short_task.order_line_id)
    substitute = factories.stocked_item(warehouse, sku="SHORTY-2", quantity=50, code="C-01")
    factories.substitute_link(line.item, substitute)
    with pytest.raises(TransitionRefused, match="does not accept substitutes"):
        resolve(case, "substitute", supervisor)
    assert_untouched(case)
    assert OrderLine.objects.filter(order=line.order).count() == 1
    customer.allows_substitution = True
    customer.save()
    with pytest.raises(InvalidInput):
        resolve(case, "substitute", supervisor, substitute="NO-SUCH-SKU")
    resolve(case, "substitute", supervisor)
    assert_resolved(case, "substitute", "user:sam")
    new_line = OrderLine.objects.get(order=line.order, line_no=2)
    assert (new_line.item.sku, new_line.quantity, new_line.substitute_for) == ("SHORTY-2", 4, line.item)
    line.refresh_from_db()
    assert line.quantity == 6


def test_a_resolution_the_type_does_not_allow_is_refused(short_task, supervisor):
    case = the_case("short_pick")
    with pytest.raises(InvalidInput, match="not a resolution of short pick cases"):
        resolve(case, "release_hold", supervisor)
    with pytest.raises(InvalidInput, match="Unknown resolution"):
        resolve(case, "teleport", supervisor)
    assert_untouched(case)


def test_a_domain_refusal_rolls_back_the_case_transition(short_task, supervisor):
    case = the_case("short_pick")
    orchestration.order_cancel(order=short_task.order, actor=SYSTEM, reason="Customer withdrew")
    case.refresh_from_db()
    assert case.status == "auto_resolved"  # the order's cancellation took the case along
    with pytest.raises(TransitionRefused):
        resolve(case, "cancel_line", supervisor)


# --- credit hold -----------------------------------------------------------------------------


@pytest.fixture
def held_order(warehouse, item):
    tight = factories.CustomerFactory(code="tight", credit_limit=Decimal("0"))
    order = factories.processed_order(tight, warehouse, [(item.sku, 3)])
    assert order.status == Order.Status.CREDIT_HOLD
    return order


def test_release_hold_by_finance_allocates_the_order(held_order, finance):
    case = the_case("credit_hold")
    assert (case.queue.code, case.subject_id, case.order_number) == ("finance", str(held_order.pk), held_order.number)
    resolve(case, "release_hold", finance, reason="Customer paid")
    assert_resolved(case, "release_hold", "user:fran")  # not auto-resolved by its own credit release
    held_order.refresh_from_db()
    assert held_order.status == Order.Status.ALLOCATED
    assert Reservation.objects.filter(order_number=held_order.number, status="reserved").exists()


def test_only_finance_may_release_a_credit_hold(held_order, service, supervisor):
    case = the_case("credit_hold")
    services.case_route_to(case=case, queue_code="customer_service", actor=SYSTEM, reason="Customer on the phone")
    with pytest.raises(PermissionRefused, match="not open to your roles"):
        resolve(case, "release_hold", service)  # their queue now, but releasing credit is finance's
    with pytest.raises(PermissionRefused):
        resolve(case, "release_hold", supervisor)
    case.refresh_from_db()
    assert case.status == "open" and not DomainEvent.objects.filter(name="case.resolved").exists()
    held_order.refresh_from_db()
    assert held_order.status == Order.Status.CREDIT_HOLD


def test_who_entered_the_order_may_not_release_its_credit_hold(warehouse, item, finance):
    tight = factories.CustomerFactory(code="tight2", credit_limit=Decimal("0"))
    order = factories.order_for(tight, warehouse, [(item.sku, 1)], actor=as_user(finance))
    orchestration.order_process(order=order, actor=SYSTEM)
    case = the_case("credit_hold")
    with pytest.raises(PermissionRefused) as error:
        resolve(case, "release_hold", finance)
    assert error.value.code == "own_request"
    assert_untouched(case)
    colleague = factories.person(Role.FINANCE, username="fred")
    resolve(case, "release_hold", colleague)
    assert_resolved(case, "release_hold", "user:fred")


def test_cancel_order_from_a_credit_hold(held_order, finance):
    case = the_case("credit_hold")
    resolve(case, "cancel_order", finance, reason="Customer will not pay")
    assert_resolved(case, "cancel_order", "user:fran")
    held_order.refresh_from_db()
    assert held_order.status == Order.Status.CANCELLED


# --- receiving variance ------------------------------------------------------------------------


@pytest.fixture
def short_receipt(warehouse, item, procurement):
    dock = factories.location(warehouse, "DOCK-1")
    receipt = inventory.receipt_create(
        number="ASN-1",
        warehouse=warehouse,
        supplier="Acme Supply",
        lines=[{"item": item, "expected_quantity": 100}],
        actor=SYSTEM,
        reason="ASN received",
    )
    inventory.receipt_receive_line(line=receipt.lines.get(), quantity=80, location=dock, actor=SYSTEM)
    inventory.receipt_close(receipt=receipt, actor=as_user(procurement), reason="Unloaded")
    receipt.refresh_from_db()
    assert receipt.invoice_on_hold
    return receipt


def test_receiving_variance_case_names_the_receipt_and_its_value(short_receipt):
    case = the_case("receiving_variance")
    assert (case.queue.code, case.subject_type, case.subject_id) == (
        "procurement",
        "inventory.receipt",
        str(short_receipt.pk),
    )
    assert case.materiality == Decimal("200.00")  # 20 units × 10.00
    assert case.context["lines"]["1"]["variance"] == -20


def test_accept_variance_releases_the_supplier_invoice(short_receipt, procurement):
    case = the_case("receiving_variance")
    with pytest.raises(PermissionRefused):  # pat closed the receipt: someone else approves
        resolve(case, "accept_variance", procurement)
    assert_untouched(case)
    colleague = factories.person(Role.PROCUREMENT, username="pia")
    resolve(case, "accept_variance", colleague, reason="Supplier short-shipped, credit note agreed")
    assert_resolved(case, "accept_variance", "user:pia")
    receipt = Receipt.objects.get(pk=short_receipt.pk)
    assert not receipt.invoice_on_hold
    assert receipt.lines.get().variance_accepted


def test_dispute_keeps_the_invoice_on_hold(short_receipt, procurement):
    case = the_case("receiving_variance")
    resolve(case, "dispute_variance", procurement, reason="ASN said 100")
    assert_resolved(case, "dispute_variance", "user:pat")
    receipt = Receipt.objects.get(pk=short_receipt.pk)
    assert receipt.invoice_on_hold
    assert receipt.history.latest("history_id").history_reason == "ASN said 100"


# --- count variance ------------------------------------------------------------------------------


@pytest.fixture
def counted(warehouse, item, supervisor):
    level = StockLevel.objects.get(item=item)
    count = inventory.count_request(stock_level=level, actor=SYSTEM, reason="Cycle count")
    inventory.count_record(count=count, counted_quantity=90, actor=as_user(supervisor))
    return count


def test_the_counter_may_not_approve_their_own_count(counted, supervisor, supervisor2):
    case = the_case("count_variance")
    assert case.raised_by == "user:sam"
    with pytest.raises(PermissionRefused) as error:
        resolve(case, "approve_adjustment", supervisor)
    assert error.value.code == "own_request"
    assert_untouched(case)
    assert StockLevel.objects.get(pk=counted.stock_level_id).on_hand == 100
    resolve(case, "approve_adjustment", supervisor2, reason="Recounted myself: 90")
    assert_resolved(case, "approve_adjustment", "user:sue")
    assert StockLevel.objects.get(pk=counted.stock_level_id).on_hand == 90
    assert CycleCount.objects.get(pk=counted.pk).status == "approved"


def test_reject_count_keeps_on_hand_and_asks_for_a_recount(counted, supervisor2):
    case = the_case("count_variance")
    resolve(case, "reject_count", supervisor2, reason="Counted the wrong bay")
    assert_resolved(case, "reject_count", "user:sue")
    assert StockLevel.objects.get(pk=counted.stock_level_id).on_hand == 100
    assert CycleCount.objects.get(pk=counted.pk).status == "rejected"
    assert CycleCount.objects.filter(stock_level_id=counted.stock_level_id, status="open").count() == 1


# --- partial shipment decision ---------------------------------------------------------------------


@pytest.fixture
def unsplittable(db):
    return factories.CustomerFactory(code="whole", allows_split_shipment=False)


def test_ship_partial_drops_unreserved_lines_and_releases_the_rest(unsplittable, warehouse, item, service):
    factories.ItemFactory(sku="NONE-LEFT")
    order = factories.processed_order(unsplittable, warehouse, [(item.sku, 5), ("NONE-LEFT", 2)])
    assert order.status == Order.Status.PARTIALLY_ALLOCATED
    case = the_case("partial_shipment_decision")
    assert (case.queue.code, case.order_number) == ("customer_service", order.number)
    resolve(case, "ship_partial", service, reason="Customer agreed on the phone")
    assert_resolved(case, "ship_partial", "user:casey")
    order.refresh_from_db()
    assert order.status == Order.Status.RELEASED
    assert order.lines.get(line_no=2).status == "cancelled"
    assert Task.objects.filter(order=order, kind="pick").count() == 1


def test_ship_partial_shortens_a_partly_reserved_line_to_what_is_reserved_and_releases(
    unsplittable, warehouse, item, service
):
    factories.ItemFactory(sku="NONE-LEFT")
    order = factories.processed_order(unsplittable, warehouse, [(item.sku, 150), ("NONE-LEFT", 2)])
    reserved = order.lines.get(line_no=1).allocated_quantity
    assert order.status == Order.Status.PARTIALLY_ALLOCATED and 0 < reserved < 150
    case = the_case("partial_shipment_decision")

    resolve(case, "ship_partial", service, reason="Customer takes what is there")

    assert_resolved(case, "ship_partial", "user:casey")
    case.refresh_from_db()
    assert f"line 1 ships {reserved} of 150" in case.resolution_note and "line 2 cancelled" in case.resolution_note
    order.refresh_from_db()
    assert order.status == Order.Status.RELEASED
    first, second = order.lines.order_by("line_no")
    assert (first.quantity, first.allocated_quantity, first.status) == (reserved, reserved, "allocated")
    assert second.status == "cancelled"
    assert (
        Reservation.objects.filter(order_line_id=first.pk, status="reserved").aggregate(t=Sum("quantity"))["t"]
        == reserved
    )
    assert sum(Task.objects.filter(order=order, kind="pick").values_list("quantity", flat=True)) == reserved
    change = DomainEvent.objects.filter(name="order.line_changed", payload__change="reduced").get()
    assert (change.payload["line_no"], change.payload["cancelled_quantity"]) == (1, 150 - reserved)
    assert change.actor == "user:casey" and "Customer takes what is there" in change.reason


def test_only_a_partly_reserved_line_is_shortened_and_a_refusal_changes_nothing(unsplittable, warehouse, item):
    order = factories.processed_order(unsplittable, warehouse, [(item.sku, 5)])
    line = order.lines.get()
    assert line.allocated_quantity == line.quantity == 5

    with pytest.raises(TransitionRefused) as refused:
        orchestration.order_line_reduce_to_allocated(line=line, actor=SYSTEM, reason="Customer takes less")

    assert refused.value.code == "not_partly_reserved"
    line.refresh_from_db()
    assert (line.quantity, line.allocated_quantity, line.status) == (5, 5, "allocated")
    assert not DomainEvent.objects.filter(name="order.line_changed").exists()


def test_wait_changes_nothing_in_the_order(unsplittable, warehouse, item, service):
    order = factories.processed_order(unsplittable, warehouse, [(item.sku, 150)])
    case = the_case("partial_shipment_decision")
    resolve(case, "wait", service, reason="Customer prefers one delivery")
    assert_resolved(case, "wait", "user:casey")
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_ALLOCATED


# --- address -----------------------------------------------------------------------------------------


@pytest.fixture
def no_city(customer, warehouse, item):
    order = factories.processed_order(customer, warehouse, [(item.sku, 2)], ship_to={**factories.SHIP_TO, "city": ""})
    assert order.status == Order.Status.ON_HOLD
    return order


def test_fix_address_corrects_it_and_the_order_continues(no_city, service):
    case = the_case("address_invalid")
    assert case.context["missing"] == ["city"]
    with pytest.raises(InvalidInput) as error:
        resolve(case, "fix_address", service, ship_to={"country": "GBR"})
    assert set(error.value.fields) == {"params.ship_to.country", "params.ship_to.city"}
    assert_untouched(case)
    resolve(case, "fix_address", service, reason="Customer gave the city", ship_to={"city": "Leeds"})
    assert_resolved(case, "fix_address", "user:casey")
    no_city.refresh_from_db()
    assert no_city.ship_to_city == "Leeds"
    assert no_city.status == Order.Status.ALLOCATED


def test_fix_address_takes_flat_form_fields(no_city, service):
    case = the_case("address_invalid")
    resolve(case, "fix_address", service, ship_to_city="York")
    no_city.refresh_from_db()
    assert no_city.ship_to_city == "York"


# --- acknowledge, investigate, integration messages -----------------------------------------------


def test_acknowledge_and_investigate(warehouse, item, supervisor):
    fault = services.case_raise(
        type_code="automation_fault",
        subject_type="automation.equipment",
        subject_id="7",
        summary="jam",
        actor=SYSTEM,
        reason="jam",
    )
    resolve(fault, "acknowledge", supervisor, reason="Cleared the tote")
    assert_resolved(fault, "acknowledge", "user:sam")
    level = StockLevel.objects.get(item=item)
    mismatch = services.case_raise(
        type_code="inventory_mismatch",
        subject=level,
        summary="WMS says 95",
        actor=SYSTEM,
        reason="reconciliation",
    )
    resolve(mismatch, "investigate", supervisor)
    assert_resolved(mismatch, "investigate", "user:sam")
    assert CycleCount.objects.filter(stock_level=level, status="open").exists()


def test_replay_and_discard_need_a_message_and_the_integrations_service(monkeypatch, db):
    from integrations import services as integrations

    it = factories.person(Role.IT_SUPPORT, username="ivy")
    case = services.case_raise(
        type_code="integration_failure",
        subject_type="integrations.outboundmessage",
        subject_id="424242",
        summary="dead",
        actor=SYSTEM,
        reason="dead letter",
        context={"message_id": 424242},
    )
    with pytest.raises(DomainError, match="No outbound message 424242"):
        resolve(case, "replay", it)
    monkeypatch.delattr(integrations, "message_discard")
    with pytest.raises(DomainError) as error:
        resolve(case, "discard", it)
    assert error.value.code == "not_available"
    with pytest.raises(InvalidInput):
        resolve(case, "replay", it, payload="{not json")
    assert_untouched(case)


@pytest.fixture
def dead_letter(db):
    from integrations.delivery import raise_integration_failure
    from integrations.models import OutboundMessage, Partner
    from integrations.outbound import message_send

    Partner.objects.create(code="erp", name="ERP", kind="erp", outbound_base_url="http://127.0.0.1:9/erp")
    message = message_send(
        partner_kind="erp",
        message_type="order.accepted",
        payload={"order": "SO1", "qty": "two"},
        ordering_key="order:SO1",
        order_number="SO1",
        actor=SYSTEM,
    )
    OutboundMessage.objects.filter(pk=message.pk).update(status="dead", attempts=8, last_error="HTTP 422")
    message.refresh_from_db()
    raise_integration_failure(message)
    return message


def test_replay_with_a_corrected_payload_resends_the_message(dead_letter):
    it = factories.person(Role.IT_SUPPORT, username="ivy")
    case = the_case("integration_failure")
    assert (case.queue.code, case.subject_id) == ("it_support", str(dead_letter.pk))
    resolve(case, "replay", it, reason="Quantity must be a number", payload='{"order": "SO1", "qty": 2}')
    assert_resolved(case, "replay", "user:ivy")
    dead_letter.refresh_from_db()
    assert (dead_letter.status, dead_letter.payload) == ("pending", {"order": "SO1", "qty": 2})


def test_discard_gives_up_on_the_message(dead_letter):
    it = factories.person(Role.IT_SUPPORT, username="ivy")
    case = the_case("integration_failure")
    resolve(case, "discard", it, reason="Order was re-keyed by hand in the ERP")
    assert_resolved(case, "discard", "user:ivy")
    dead_letter.refresh_from_db()
    assert dead_letter.status == "discarded"


def test_a_credit_hold_case_links_the_customers_credit_for_finance(client, held_order, finance, supervisor):
    case = the_case("credit_hold")
    customer_page = f'href="/orders/customers/{held_order.customer.code}/"'
    client.force_login(finance)
    assert customer_page in client.get(f"/queues/cases/{case.pk}/").content.decode()
    services.case_route_to(case=case, queue_code="warehouse_supervisor", actor=SYSTEM, reason="Wrong queue")
    client.force_login(supervisor)  # may work the case now, may not see the customer's credit
    page = client.get(f"/queues/cases/{case.pk}/")
    assert page.status_code == 200 and customer_page not in page.content.decode()
