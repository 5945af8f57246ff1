"""Credit holds lift by themselves when the customer's credit changes and an order fits it again."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exceptions.models import Case
from orchestration import services
from orchestration.models import Customer, Order, ReleasePolicy
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
    assert "takes tight to 80.00 within a credit limit of 100" in released.history_reason
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
