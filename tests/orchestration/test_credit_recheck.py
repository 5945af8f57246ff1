"""Credit holds lift by themselves when the customer's credit changes and an order fits it again."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exceptions.models import Case
from orchestration import services
from orchestration.models import Customer, Order, ReleasePolicy
from orchestration.selectors import order_timeline
from portal import events
from portal.actors import Actor
from portal.models import DomainEvent
from tests.orchestration import factories

pytestmark = pytest.mark.django_db

ERP = Actor.partner("erp")


@pytest.fixture
def tight(db):
    """A customer with 100.00 of credit, 90.00 of it used by invoices not yet paid."""
    return factories.CustomerFactory(code="tight", credit_limit=Decimal("100"), open_balance=Decimal("90"))


def held(customer, warehouse, quantity: int, **fields) -> Order:
    """A processed order of `quantity` × TAPE at 10.00 that went to credit hold."""
    order = factories.processed_order(customer, warehouse, [("TAPE", quantity)], **fields)
    assert order.status == Order.Status.CREDIT_HOLD, order.status
    return order


def credit_report(customer, **figures) -> None:
    """The ERP's report of the customer's credit, and the worker's run of what subscribes to the change."""
    services.customer_update_credit(customer=customer, actor=ERP, reason="Balance from the ERP", **figures)
    events.dispatch(DomainEvent.objects.filter(name="customer.credit_updated").latest("pk").pk)


def credit_case(order: Order) -> Case:
    return Case.objects.get(type__code="credit_hold", order_number=order.number)


def test_a_payment_lets_the_held_orders_that_fit_go_ahead_most_urgent_first(warehouse, tape, tight):
    # Given: three orders held over the limit: 30.00 (normal), 30.00 (urgent, placed later) and 80.00
    normal = held(tight, warehouse, 3)
    urgent = held(tight, warehouse, 3, priority=Order.Priority.URGENT)
    large = held(tight, warehouse, 8)

    # When: the ERP books a payment that leaves 50.00 owed: room for one of the 30.00 orders
    credit_report(tight, open_balance=Decimal("50"))

    # Then: the urgent order goes (50 + 30); after it neither the normal (80 + 30) nor the large one fits
    for order in (normal, urgent, large):
        order.refresh_from_db()
    assert (urgent.status, normal.status, large.status) == (
        Order.Status.ALLOCATED,
        Order.Status.CREDIT_HOLD,
        Order.Status.CREDIT_HOLD,
    )
    assert services.credit_exposure(Customer.objects.get(pk=tight.pk)) == Decimal("80.00")
    # ... each release is explained: by the policy, with the figures that allowed it
    released = urgent.history.filter(status=Order.Status.VALIDATED).latest("history_id")
    assert released.history_actor == "policy:credit-recheck"
    assert "takes tight to 80.00 within a credit limit of 100.00" in released.history_reason
    # ... its credit case closed with its cause; the others stay with finance
    assert credit_case(urgent).status == Case.Status.AUTO_RESOLVED
    assert credit_case(normal).status == credit_case(large).status == Case.Status.OPEN

    # When: the customer pays the rest: the normal order fits (0 + 30 + 30), and the large one after it (60 + 80) not
    credit_report(tight, open_balance=Decimal("0"))

    normal.refresh_from_db()
    large.refresh_from_db()
    assert (normal.status, large.status) == (Order.Status.ALLOCATED, Order.Status.CREDIT_HOLD)


def test_holds_stay_for_finance_where_the_release_policy_says_so(warehouse, tape, tight):
    ReleasePolicy.objects.create(name="Finance decides", release_credit_holds_when_clear=False)
    order = held(tight, warehouse, 3)

    credit_report(tight, open_balance=Decimal("0"))

    order.refresh_from_db()
    assert order.status == Order.Status.CREDIT_HOLD
    assert credit_case(order).status == Case.Status.OPEN


def test_a_blocked_customer_stays_held_until_the_block_is_lifted(warehouse, tape, tight):
    Customer.objects.filter(pk=tight.pk).update(credit_status=Customer.CreditStatus.BLOCKED, open_balance=0)
    order = held(tight, warehouse, 3)

    credit_report(tight, credit_limit=Decimal("5000"))
    order.refresh_from_db()
    assert order.status == Order.Status.CREDIT_HOLD  # more credit, but still blocked

    credit_report(tight, credit_status=Customer.CreditStatus.GOOD)
    order.refresh_from_db()
    assert order.status == Order.Status.ALLOCATED


def test_an_order_finance_released_meanwhile_is_left_as_it_is(warehouse, tape, tight):
    order = held(tight, warehouse, 3)
    services.order_release_credit_hold(order=order, actor=Actor.system("fran"), reason="Customer called")
    Customer.objects.filter(pk=tight.pk).update(open_balance=0)

    assert services.orders_recheck_credit_holds(customer=tight, actor=ERP, reason="Balance from the ERP") == 0

    order.refresh_from_db()
    assert order.status == Order.Status.ALLOCATED
    assert order.history.filter(history_actor="partner:erp").count() == 0


def test_a_cancelled_order_makes_room_for_a_held_one(warehouse, tape, tight):
    # Given: a 30.00 order allocated while the customer owed nothing, then one held at 90 + 30 + 30
    Customer.objects.filter(pk=tight.pk).update(open_balance=Decimal("40"))
    placed = factories.processed_order(tight, warehouse, [("TAPE", 3)])
    assert placed.status in (Order.Status.ALLOCATED, Order.Status.RELEASED)
    waiting = held(tight, warehouse, 4)  # 40 + 30 + 40 > 100

    # When: the first order is cancelled, and the worker runs what subscribes to that
    services.order_cancel(order=placed, actor=ERP, reason="Customer withdrew")
    events.dispatch(DomainEvent.objects.filter(name="order.cancelled").latest("pk").pk)

    # Then: the held order fits in the room the cancellation left (40 + 40)
    waiting.refresh_from_db()
    assert waiting.status == Order.Status.ALLOCATED
    assert "was cancelled" in waiting.history.filter(status=Order.Status.VALIDATED).latest("history_id").history_reason


SERVICE = Actor.system("cleo")


def line_changed(change: str) -> None:
    """The worker's run of what subscribes to the latest order.line_changed event."""
    event = DomainEvent.objects.filter(name="order.line_changed").latest("pk")
    assert event.payload["change"] == change
    events.dispatch(event.pk)


def test_a_cancelled_line_lowers_the_order_value_and_makes_room_for_a_held_order(warehouse, tape, gloves, tight):
    # Given: 30.00 of tape and 20.00 of gloves allocated while the customer owed 40.00; then 40.00 held (40 + 50 + 40)
    Customer.objects.filter(pk=tight.pk).update(open_balance=Decimal("40"))
    placed = factories.processed_order(tight, warehouse, [("TAPE", 3), ("GLOVES", 2)])
    assert (placed.status, placed.total_value) == (Order.Status.RELEASED, Decimal("50.00"))
    waiting = held(tight, warehouse, 4)

    # When: customer service cancels the tape line, and the worker runs what subscribes to that
    services.order_line_cancel(line=placed.lines.get(line_no=1), actor=SERVICE, reason="No longer needs tape")
    line_changed("cancelled")

    # Then: the order is worth what its other line carries, and the change is explained
    placed.refresh_from_db()
    assert placed.total_value == Decimal("20.00")
    revalued = placed.history.filter(total_value=Decimal("20.00")).earliest("history_id")
    assert (revalued.history_actor, revalued.history_reason) == ("system:cleo", "No longer needs tape")
    assert DomainEvent.objects.filter(name="order.line_changed").latest("pk").payload["value"] == "20.00"
    titles = [entry.title for entry in order_timeline(placed)]
    assert f"Order {placed.number}: value 50.00 → 20.00" in titles
    # ... and the held order fits in the room it left (40 + 20 + 40 within 100)
    waiting.refresh_from_db()
    assert waiting.status == Order.Status.ALLOCATED
    reason = waiting.history.filter(status=Order.Status.VALIDATED).latest("history_id").history_reason
    assert f"Line 1 of {placed.number} was cancelled" in reason


def test_a_held_order_shortened_to_fit_goes_ahead(warehouse, tape, gloves, tight):
    # Given: the customer owes 60.00; 50.00 of tape is held (110), and so is 20.00 of tape with 80.00 of gloves (160)
    Customer.objects.filter(pk=tight.pk).update(open_balance=Decimal("60"))
    first = held(tight, warehouse, 5)
    mixed = factories.processed_order(tight, warehouse, [("TAPE", 2), ("GLOVES", 8)])
    assert mixed.status == Order.Status.CREDIT_HOLD

    # When: the customer drops the gloves
    services.order_line_cancel(line=mixed.lines.get(line_no=2), actor=SERVICE, reason="Gloves dropped")
    line_changed("cancelled")

    # Then: the shortened order fits (60 + 20) and goes ahead; the first one, older, still does not (60 + 20 + 50)
    mixed.refresh_from_db()
    first.refresh_from_db()
    assert (mixed.total_value, mixed.status) == (Decimal("20.00"), Order.Status.ALLOCATED)
    assert (first.total_value, first.status) == (Decimal("50.00"), Order.Status.CREDIT_HOLD)


def test_a_line_shortened_to_what_is_reserved_is_worth_less(warehouse, gloves, customer):
    # Given: 60 gloves ordered, 50 on the shelf: partly allocated, worth 600.00
    order = factories.processed_order(customer, warehouse, [("GLOVES", 60)])
    line = order.lines.get()
    assert (line.allocated_quantity, order.total_value) == (50, Decimal("600.00"))

    services.order_line_reduce_to_allocated(line=line, actor=SERVICE, reason="Customer takes 50")

    order.refresh_from_db()
    assert order.total_value == Decimal("500.00")
    assert DomainEvent.objects.filter(name="order.line_changed").latest("pk").payload["value"] == "500.00"


def test_a_backorder_decision_changes_no_value_and_releases_nothing(warehouse, tape, tight):
    waiting = held(tight, warehouse, 3)
    Customer.objects.filter(pk=tight.pk).update(open_balance=Decimal("0"))  # room now, but no credit event said so

    services.order_line_backorder(line=waiting.lines.get(), actor=SERVICE, reason="Wait for stock")
    line_changed("backordered")

    waiting.refresh_from_db()
    assert (waiting.status, waiting.total_value) == (Order.Status.CREDIT_HOLD, Decimal("30.00"))


def test_a_hold_states_its_figures_as_amounts_people_read(warehouse, tape):
    big = factories.CustomerFactory(code="big", credit_limit=Decimal("15000"), open_balance=Decimal("14990"))

    order = held(big, warehouse, 3)

    why = "Order value 30.00 takes big to 15,020.00 against a credit limit of 15,000.00"
    assert order.history.filter(status=Order.Status.CREDIT_HOLD).latest("history_id").history_reason.endswith(why)
    assert why in credit_case(order).summary
    titles = [entry.title for entry in order_timeline(order)]
    assert "Credit hold: exposure 14,990.00 against limit 15,000.00" in titles
