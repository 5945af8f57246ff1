"""The operations admin: pages load, transitions run through the services with a reason, per-item failures reported."""

from __future__ import annotations

import pytest
from django.contrib.admin import helpers
from django.urls import reverse

from inventory.models import CycleCount, Receipt, Reservation, StockLevel, StockMovement
from orchestration.models import Customer, Order, ReleasePolicy, Shipment, Task
from portal.models import DomainEvent
from portal.roles import Role
from tests.orchestration import factories


@pytest.fixture
def opsadmin(client, user_with_role):
    user = user_with_role(Role.OPERATIONS_ADMIN, username="olu", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def released(warehouse, customer, tape, gloves):
    return factories.processed_order(customer, warehouse, [("TAPE", 5), ("GLOVES", 2)])


@pytest.mark.parametrize(
    "model",
    [Order, Task, Shipment, Customer, ReleasePolicy, Reservation, StockLevel, StockMovement, Receipt, CycleCount],
)
def test_changelists_and_change_pages_load(model, opsadmin, released):
    opts = model._meta
    assert opsadmin.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 200
    first = model.objects.first()
    if first is not None:
        page = opsadmin.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk]))
        assert page.status_code == 200
        if hasattr(model, "history"):
            history = reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[first.pk])
            assert opsadmin.get(history).status_code == 200


def test_order_page_offers_service_buttons_not_raw_edits(opsadmin, released):
    page = opsadmin.get(reverse("admin:orchestration_order_change", args=[released.pk])).content.decode()
    assert "Cancel</a>" in page and "Put on hold" not in page  # released orders are cancellable, not holdable
    assert 'name="_save"' not in page  # the order itself is not edited in the admin


def test_bulk_action_asks_for_a_reason_then_runs_each_order_through_the_service(
    opsadmin, warehouse, customer, tape, released
):
    holdable = factories.validated_order(customer, warehouse, [("TAPE", 1)])
    url = reverse("admin:orchestration_order_changelist")
    selection = {"action": "hold", helpers.ACTION_CHECKBOX_NAME: [holdable.pk, released.pk]}

    asked = opsadmin.post(url, selection)
    assert asked.status_code == 200 and "give a reason" in asked.content.decode()
    events_before = DomainEvent.objects.count()

    done = opsadmin.post(url, {**selection, "apply": "1", "reason": "Customer asked to wait"}, follow=True)
    text = done.content.decode()
    assert "done for 1 of 2" in text
    assert f"Cannot hold order {released.number}: not allowed while it is released" in text
    holdable.refresh_from_db()
    released.refresh_from_db()
    assert (holdable.status, released.status) == (Order.Status.ON_HOLD, Order.Status.RELEASED)
    latest = holdable.history.latest("history_id")
    assert (latest.history_actor, latest.history_reason) == ("user:olu", "Customer asked to wait")
    assert DomainEvent.objects.count() == events_before + 1


def test_button_on_the_change_form_cancels_through_the_service(opsadmin, released):
    url = reverse("admin:orchestration_order_service_action", args=[released.pk, "cancel_order"])
    assert "give a reason" in opsadmin.get(url).content.decode()
    assert opsadmin.post(url, {"reason": ""}).status_code == 200  # no reason: the form again, nothing done
    released.refresh_from_db()
    assert released.status == Order.Status.RELEASED
    opsadmin.post(url, {"reason": "Duplicate order"})
    released.refresh_from_db()
    assert released.status == Order.Status.CANCELLED
    assert not Reservation.objects.filter(order_number=released.number, status="reserved").exists()


def test_history_cannot_be_reverted(opsadmin, released):
    version = released.history.earliest("history_id")
    url = reverse("admin:orchestration_order_simple_history", args=[released.pk, version.history_id])
    assert opsadmin.post(url, {}).status_code == 403


def test_staff_without_the_permission_get_no_actions(client, user_with_role, released):
    client.force_login(user_with_role(username="viewer", is_staff=True))
    url = reverse("admin:orchestration_order_service_action", args=[released.pk, "cancel_order"])
    assert client.post(url, {"reason": "x"}).status_code in (302, 403)
    released.refresh_from_db()
    assert released.status == Order.Status.RELEASED


def test_the_operations_admin_role_alone_opens_the_admin_and_takes_actions(
    client, user_with_role, warehouse, customer, tape
):
    """No superuser flag: the role's group carries the permissions granted after migrate."""
    client.force_login(user_with_role(Role.OPERATIONS_ADMIN, username="olu2", is_staff=True))
    order = factories.validated_order(customer, warehouse, [("TAPE", 1)])
    assert client.get(reverse("admin:orchestration_order_changelist")).status_code == 200
    assert client.get(reverse("admin:inventory_stocklevel_changelist")).status_code == 200
    url = reverse("admin:orchestration_order_service_action", args=[order.pk, "hold"])
    client.post(url, {"reason": "Waiting for the customer's new PO"})
    order.refresh_from_db()
    assert order.status == Order.Status.ON_HOLD
