"""The ERP's side of the books: invoices close an order's credit in flight, the customer's balance follows the ERP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exceptions.models import Case
from integrations.models import InboundEvent
from orchestration import services as orchestration
from orchestration.models import Customer, Order, Task
from portal.actors import Actor
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.api_support import event

FLOOR = Actor.system("floor")


@pytest.fixture
def placed(network, erp, api_client):
    """An order of three lines at 5.00 × 2 each (30.00), released to the warehouse."""
    number = api_client(erp[1]).post("/api/v1/orders", order_body("PO-INV")).json()["number"]  # noqa: F405
    return Order.objects.get(number=number)


def ship(order: Order) -> Order:
    for task in Task.objects.filter(order=order, kind=Task.Kind.PICK):
        orchestration.task_start(task=task, actor=FLOOR, reason="Picked")
        orchestration.task_complete(task=task, done_quantity=task.quantity, actor=FLOOR, reason="Picked")
    shipment = orchestration.shipment_pack(order=Order.objects.get(pk=order.pk), actor=FLOOR, reason="Packed")
    orchestration.shipment_ship(shipment=shipment, carrier="DPD", tracking_number="T1", actor=FLOOR, reason="Gone")
    return Order.objects.get(pk=order.pk)


@pytest.mark.django_db
def test_an_invoice_from_the_erp_takes_the_order_out_of_the_credit_in_flight(placed, erp, post_as):
    order = ship(placed)
    acme = Customer.objects.get(code="acme")
    assert order.status == Order.Status.SHIPPED
    assert orchestration.credit_exposure(acme) == Decimal("30.00")

    response = post_as(erp[1], event("order.invoiced", {"order": order.number, "invoice": "INV-881"}))

    assert response.status_code == 202, response.content
    order.refresh_from_db()
    assert order.status == Order.Status.INVOICED
    assert orchestration.credit_exposure(acme) == Decimal("0")
    latest = order.history.latest("history_id")
    assert latest.history_actor == "partner:erp-a" and "Invoice INV-881" in latest.history_reason
    assert InboundEvent.objects.get(type="order.invoiced").status == "processed"


@pytest.mark.django_db
def test_an_invoice_for_an_order_not_yet_shipped_fails_into_an_it_support_case(placed, erp, post_as):
    post_as(erp[1], event("order.invoiced", {"order": placed.number, "invoice": "INV-EARLY"}, event_id="inv-early"))

    stored = InboundEvent.objects.get(event_id="inv-early")
    placed.refresh_from_db()
    assert placed.status == Order.Status.RELEASED  # nothing changed
    assert stored.status == "failed"
    case = Case.objects.get(type__code="integration_failure", subject_id=str(stored.pk))
    assert case.queue.role == "it_support" and placed.number in case.summary + str(case.context)


@pytest.mark.django_db
def test_an_invoice_sent_twice_under_new_ids_is_applied_once(placed, erp, post_as):
    order = ship(placed)
    post_as(erp[1], event("order.invoiced", {"order": order.number, "invoice": "INV-9"}, event_id="inv-a"))
    post_as(erp[1], event("order.invoiced", {"order": order.number, "invoice": "INV-9"}, event_id="inv-b"))

    statuses = dict(InboundEvent.objects.values_list("event_id", "status"))
    assert statuses == {"inv-a": "processed", "inv-b": "ignored"}
    assert Order.objects.get(pk=order.pk).history.filter(status=Order.Status.INVOICED).count() == 1


@pytest.mark.django_db
def test_the_customers_balance_from_the_erp_is_what_the_next_credit_check_weighs(network, erp, api_client, post_as):
    acme = Customer.objects.get(code="acme")
    Customer.objects.filter(pk=acme.pk).update(credit_limit=Decimal("1000.00"))
    body = {"customer": "acme", "open_balance": "990.00", "credit_status": "watch", "note": "Dunning level 1"}

    response = post_as(erp[1], event("customer.credit", body))

    assert response.status_code == 202, response.content
    acme.refresh_from_db()
    assert (acme.open_balance, acme.credit_status, acme.credit_limit) == (Decimal("990.00"), "watch", Decimal("1000"))
    changed = acme.history.latest("history_id")
    assert changed.history_actor == "partner:erp-a" and "Dunning level 1" in changed.history_reason
    number = api_client(erp[1]).post("/api/v1/orders", order_body("PO-OVER")).json()["number"]  # noqa: F405
    assert Order.objects.get(number=number).status == Order.Status.CREDIT_HOLD  # 990 + 30 over 1,000

    post_as(erp[1], event("customer.credit", {"customer": "acme", "open_balance": "100.00"}))  # paid

    number = api_client(erp[1]).post("/api/v1/orders", order_body("PO-PAID")).json()["number"]  # noqa: F405
    assert Order.objects.get(number=number).status == Order.Status.RELEASED


@pytest.mark.django_db
def test_a_balance_report_that_changes_nothing_records_nothing(network, erp, post_as):
    acme = Customer.objects.get(code="acme")
    rows = acme.history.count()

    post_as(erp[1], event("customer.credit", {"customer": "acme", "open_balance": str(acme.open_balance)}))

    assert acme.history.count() == rows
    assert InboundEvent.objects.get(type="customer.credit").status == "processed"


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["order.invoiced", "customer.credit"])
def test_only_the_erp_may_report_invoices_and_credit(network, wms, post_as, kind):
    payload = {"order": "SO1", "invoice": "X"} if kind == "order.invoiced" else {"customer": "acme", "open_balance": 0}

    response = post_as(wms[1], event(kind, payload))

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "event_type_not_allowed" and "type" in error["fields"]
    assert not InboundEvent.objects.exists()
    assert Customer.objects.get(code="acme").history.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload, field",
    [
        ({"customer": "acme"}, "payload.open_balance"),
        ({"customer": "acme", "open_balance": "lots"}, "payload.open_balance"),
        ({"customer": "acme", "open_balance": 1, "credit_limit": -5}, "payload.credit_limit"),
        ({"customer": "acme", "open_balance": 1, "credit_status": "gold"}, "payload.credit_status"),
        ({"customer": "acme", "open_balance": "1e20"}, "payload.open_balance"),
    ],
)
def test_bad_credit_figures_are_refused_at_the_door(network, erp, post_as, payload, field):
    response = post_as(erp[1], event("customer.credit", payload))

    assert response.status_code == 422, response.content
    assert field in response.json()["error"]["fields"]
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_a_balance_for_an_unknown_customer_fails_into_a_case(network, erp, post_as):
    post_as(erp[1], event("customer.credit", {"customer": "nobody", "open_balance": 5}, event_id="bal-ghost"))

    stored = InboundEvent.objects.get(event_id="bal-ghost")
    assert stored.status == "failed" and "nobody" in stored.last_error
    assert Case.objects.filter(type__code="integration_failure", subject_id=str(stored.pk)).exists()


@pytest.mark.django_db
def test_credit_figures_from_finance_are_checked_and_need_a_reason(network):
    from portal.domain import InvalidInput

    acme = Customer.objects.get(code="acme")
    with pytest.raises(InvalidInput):
        orchestration.customer_update_credit(customer=acme, credit_limit=Decimal("-1"), actor=FLOOR, reason="x")
    with pytest.raises(InvalidInput):
        orchestration.customer_update_credit(customer=acme, open_balance=Decimal("1"), actor=FLOOR, reason="")
    acme.refresh_from_db()
    assert acme.open_balance == Decimal("0") and acme.history.count() == 1


@pytest.fixture
def tms(db):
    return make_partner("tms-a", "tms", ["events:write"])  # noqa: F405


@pytest.mark.django_db
def test_an_invoiced_order_closes_when_the_carrier_delivers_its_last_shipment(placed, erp, tms, post_as):
    from orchestration.models import Shipment

    order = ship(placed)
    shipment = Shipment.objects.get(order=order)
    post_as(erp[1], event("order.invoiced", {"order": order.number, "invoice": "INV-5"}))
    assert Order.objects.get(pk=order.pk).status == Order.Status.INVOICED  # still on its way to the customer

    response = post_as(tms[1], event("shipment.delivered", {"order": order.number, "shipment": shipment.number}))

    assert response.status_code == 202, response.content
    shipment.refresh_from_db()
    order.refresh_from_db()
    assert shipment.status == Shipment.Status.CONFIRMED and shipment.confirmed_at is not None
    assert order.status == Order.Status.CLOSED and order.closed_at is not None
    assert order.history.latest("history_id").history_reason == "Invoiced, and every shipment delivered"


@pytest.mark.django_db
def test_a_delivered_order_closes_when_the_invoice_comes_last(placed, erp, tms, post_as):
    from orchestration.models import Shipment

    order = ship(placed)
    shipment = Shipment.objects.get(order=order)
    post_as(tms[1], event("shipment.delivered", {"order": order.number, "shipment": shipment.number}, event_id="pod-1"))
    post_as(tms[1], event("shipment.delivered", {"order": order.number, "shipment": shipment.number}, event_id="pod-2"))
    assert Order.objects.get(pk=order.pk).status == Order.Status.SHIPPED

    post_as(erp[1], event("order.invoiced", {"order": order.number, "invoice": "INV-6"}))

    assert Order.objects.get(pk=order.pk).status == Order.Status.CLOSED
    assert dict(InboundEvent.objects.filter(type="shipment.delivered").values_list("event_id", "status")) == {
        "pod-1": "processed",
        "pod-2": "ignored",
    }


@pytest.mark.django_db
def test_only_the_carrier_reports_a_delivery(placed, erp, post_as):
    response = post_as(erp[1], event("shipment.delivered", {"order": placed.number, "shipment": "SH1"}))

    assert response.status_code == 422 and response.json()["error"]["code"] == "event_type_not_allowed"
