"""The cutoff watch: orders due today and not packed near their carrier cutoff become a case for transportation."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from exceptions.models import Case
from orchestration import events, services
from orchestration.models import Order, Shipment, Task
from portal.actors import Actor
from portal.models import DomainEvent
from portal.roles import Role
from tests.orchestration import factories

pytestmark = pytest.mark.django_db

SAM = Actor.system("sam")


def due_on(day_offset: int, customer, warehouse, lines=(("TAPE", 2),)) -> Order:
    """A released order due `day_offset` days from the warehouse's today (carrier cutoff 16:00 there)."""
    type(warehouse).objects.filter(pk=warehouse.pk).update(default_cutoff_time=dt.time(16, 0))
    warehouse.refresh_from_db()
    ship_date = services.local_now(warehouse).date() + dt.timedelta(days=day_offset)
    order = factories.processed_order(customer, warehouse, list(lines), requested_ship_date=ship_date, carrier="DPD")
    assert order.status == Order.Status.RELEASED, order.status
    return order


def cutoff_of(order: Order) -> dt.datetime:
    day = dt.datetime.combine(order.requested_ship_date, dt.time(12), tzinfo=dt.UTC)
    return services.carrier_cutoff(Order.objects.get(pk=order.pk), now=day)


def cutoff_cases(order: Order):
    return Case.objects.filter(type__code="carrier_cutoff_miss", order_number=order.number)


def two_pickups(warehouse) -> None:
    """UPS express collects at 19:00 and DHL standard at 17:00 (DPD, the orders' carrier, has no pickup of its own)."""
    from inventory.models import CarrierCutoff

    CarrierCutoff.objects.create(warehouse=warehouse, carrier="UPS", service_level="express", cutoff_time=dt.time(19))
    CarrierCutoff.objects.create(warehouse=warehouse, carrier="DHL", service_level="standard", cutoff_time=dt.time(17))


def pack(order: Order) -> None:
    for task in Task.objects.filter(order=order, kind=Task.Kind.PICK):
        services.task_dispatch(task=task, actor=SAM)
        services.task_complete(task=task, actor=SAM)
    packing = Task.objects.get(order=order, kind=Task.Kind.PACK)
    services.task_dispatch(task=packing, actor=SAM)
    services.task_complete(task=packing, actor=SAM)


def test_an_unpacked_order_near_its_cutoff_gets_one_case_for_transportation(warehouse, customer, tape):
    order = due_on(0, customer, warehouse)
    cutoff = cutoff_of(order)

    assert services.orders_watch_cutoffs(now=cutoff - dt.timedelta(minutes=31), warning_minutes=30) == 0
    assert services.orders_watch_cutoffs(now=cutoff - dt.timedelta(minutes=25), warning_minutes=30) == 1
    assert services.orders_watch_cutoffs(now=cutoff - dt.timedelta(minutes=5), warning_minutes=30) == 0  # once a day

    case = cutoff_cases(order).get()
    assert (case.status, case.queue.code) == ("open", "transportation")
    assert case.summary.startswith(f"{order.number} will miss today's DPD pickup at {warehouse.code}: cutoff in 25 min")
    assert case.context["cutoff"] == cutoff.isoformat() and case.context["minutes_left"] == 25
    event = DomainEvent.objects.get(name=events.ORDER_CUTOFF_AT_RISK)
    assert (event.actor, event.payload["order"], event.payload["missed"]) == (
        "policy:cutoff-watch",
        order.number,
        False,
    )
    order.refresh_from_db()
    assert order.cutoff_warned_on == order.requested_ship_date
    assert order.history.first().history_actor == "policy:cutoff-watch"


def test_past_the_cutoff_the_case_says_missed(warehouse, customer, tape):
    order = due_on(0, customer, warehouse)

    assert services.orders_watch_cutoffs(now=cutoff_of(order) + dt.timedelta(minutes=12), warning_minutes=30) == 1

    assert "missed today's DPD pickup" in cutoff_cases(order).get().summary
    assert "12 min ago" in cutoff_cases(order).get().summary


def test_orders_due_later_or_already_packed_are_left_alone(warehouse, customer, tape):
    tomorrow = due_on(1, customer, warehouse)
    packed = due_on(0, customer, warehouse)
    pack(packed)
    assert Order.objects.get(pk=packed.pk).status == Order.Status.PACKED

    assert services.orders_watch_cutoffs(now=cutoff_of(packed) + dt.timedelta(minutes=1), warning_minutes=30) == 0

    assert not Case.objects.filter(type__code="carrier_cutoff_miss").exists()
    assert Order.objects.get(pk=tomorrow.pk).cutoff_warned_on is None


def test_a_decision_to_wait_is_not_undone_by_the_next_sweep(warehouse, customer, tape, user_with_role):
    order = due_on(0, customer, warehouse)
    cutoff = cutoff_of(order)
    services.orders_watch_cutoffs(now=cutoff - dt.timedelta(minutes=10), warning_minutes=30)
    case = cutoff_cases(order).get()
    from exceptions.services import case_resolve

    planner = user_with_role(Role.TRANSPORTATION)
    case_resolve(case=case, resolution="wait", actor=Actor.for_user(planner), reason="Next pickup")

    assert services.orders_watch_cutoffs(now=cutoff + dt.timedelta(minutes=30), warning_minutes=30) == 0
    assert cutoff_cases(order).count() == 1


def test_packing_before_the_cutoff_closes_the_case(warehouse, customer, tape):
    order = due_on(1, customer, warehouse)  # tomorrow's cutoff is ahead of the real clock the packing runs on
    services.orders_watch_cutoffs(now=cutoff_of(order) - dt.timedelta(minutes=10), warning_minutes=30)

    pack(order)

    case = cutoff_cases(order).get()
    assert case.status == "auto_resolved"
    assert Shipment.objects.filter(order=order).exists()


def test_packing_after_the_cutoff_keeps_the_case_until_it_ships(warehouse, customer, tape):
    order = due_on(-1, customer, warehouse)  # yesterday's cutoff is behind the real clock
    services.orders_watch_cutoffs(now=cutoff_of(order) + dt.timedelta(minutes=5), warning_minutes=30)

    pack(order)
    assert cutoff_cases(order).get().status == "open"  # it still missed the pickup

    services.shipment_ship(
        shipment=Shipment.objects.get(order=order), carrier="DPD", tracking_number="T1", actor=Actor.partner("tms")
    )
    assert cutoff_cases(order).get().status == "auto_resolved"


def test_the_watch_runs_every_minute_under_beat(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["orchestration-watch-cutoffs"]
    assert (entry["task"], entry["schedule"]) == ("orchestration.tasks.watch_cutoffs", 60.0)


def test_orders_overdue_from_earlier_days_are_not_warned_again_each_day(warehouse, customer, tape):
    order = due_on(-2, customer, warehouse)

    assert services.orders_watch_cutoffs(now=cutoff_of(order) + dt.timedelta(days=2), warning_minutes=30) == 0
    assert not cutoff_cases(order).exists()


def test_transportation_books_another_carrier_from_the_case(warehouse, customer, tape, user_with_role):
    from exceptions.services import case_resolve
    from inventory.models import CarrierCutoff

    CarrierCutoff.objects.create(warehouse=warehouse, carrier="UPS", service_level="express", cutoff_time=dt.time(19))
    order = due_on(0, customer, warehouse)
    cutoff = cutoff_of(order)
    services.orders_watch_cutoffs(now=cutoff - dt.timedelta(minutes=10), warning_minutes=30)
    planner = user_with_role(Role.TRANSPORTATION, username="terry")

    case = case_resolve(
        case=cutoff_cases(order).get(),
        resolution="reassign_carrier",
        params={"carrier": "UPS", "service_level": "express"},
        actor=Actor.for_user(planner),
        reason="UPS collects at 19:00",
    )

    order.refresh_from_db()
    assert (order.carrier, order.service_level, order.cutoff_warned_on) == ("UPS", "express", None)
    assert (case.status, case.resolution_note) == ("resolved", f"{order.number} rebooked with UPS (express)")
    changed = DomainEvent.objects.get(name=events.ORDER_CARRIER_CHANGED)
    assert (changed.actor, changed.payload["previous_carrier"], changed.payload["cutoff"][11:16]) == (
        "user:terry",
        "DPD",
        "19:00",
    )
    assert order.history.first().history_reason == "UPS collects at 19:00"
    # The new pickup is watched in its turn: nothing yet at DPD's cutoff, a warning near UPS's.
    assert services.orders_watch_cutoffs(now=cutoff + dt.timedelta(minutes=5), warning_minutes=30) == 0
    assert services.orders_watch_cutoffs(now=cutoff + dt.timedelta(hours=2, minutes=40), warning_minutes=30) == 1


@pytest.mark.parametrize("carrier", ["", "  ", "x" * 41])
def test_rebooking_needs_a_carrier_and_changes_nothing_without_one(warehouse, customer, tape, carrier):
    from portal.domain import InvalidInput

    order = due_on(0, customer, warehouse)
    with pytest.raises(InvalidInput):
        services.order_set_carrier(order=order, carrier=carrier, actor=SAM, reason="Rebook")
    order.refresh_from_db()
    assert order.carrier == "DPD"
    assert not DomainEvent.objects.filter(name=events.ORDER_CARRIER_CHANGED).exists()


def test_rebooking_takes_only_a_carrier_service_that_collects_at_the_warehouse(warehouse, customer, tape):
    from portal.domain import InvalidInput

    two_pickups(warehouse)
    order = due_on(0, customer, warehouse)

    for carrier, service_level in [("FedEx", None), ("UPS", None), ("DHL", "NaN")]:  # UPS: standard is kept
        with pytest.raises(InvalidInput) as refused:
            services.order_set_carrier(
                order=order, carrier=carrier, service_level=service_level, actor=SAM, reason="Rebook"
            )
        assert refused.value.message.endswith("Book one it has: DHL standard, UPS express.")
    order.refresh_from_db()
    assert (order.carrier, order.service_level) == ("DPD", "standard")
    assert not DomainEvent.objects.filter(name=events.ORDER_CARRIER_CHANGED).exists()

    services.order_set_carrier(order=order, carrier="ups ", service_level="EXPRESS", actor=SAM, reason="Rebook")
    order.refresh_from_db()
    assert (order.carrier, order.service_level) == ("UPS", "express")  # as the pickup spells it


def test_the_cutoff_case_suggests_the_carrier_services_that_collect_at_the_warehouse(
    warehouse, customer, tape, client, user_with_role
):
    two_pickups(warehouse)
    order = due_on(0, customer, warehouse)
    services.orders_watch_cutoffs(now=cutoff_of(order) - dt.timedelta(minutes=10), warning_minutes=30)
    client.force_login(user_with_role(Role.TRANSPORTATION, username="terry"))

    page = client.get(reverse("exceptions:case-detail", args=[cutoff_cases(order).get().pk])).content.decode()

    assert 'list="param_reassign_carrier_carrier-options"' in page
    carriers = page.split('<datalist id="param_reassign_carrier_carrier-options">')[1].split("</datalist>")[0]
    assert carriers == '<option value="DHL"><option value="UPS">'
    levels = page.split('<datalist id="param_reassign_carrier_service_level-options">')[1].split("</datalist>")[0]
    assert levels == '<option value="express"><option value="standard">'


def test_a_refused_rebook_shows_the_case_again_as_filled_in_with_what_to_book_instead(
    warehouse, customer, tape, client, user_with_role
):
    from inventory.models import CarrierCutoff

    CarrierCutoff.objects.create(warehouse=warehouse, carrier="UPS", service_level="express", cutoff_time=dt.time(19))
    order = due_on(0, customer, warehouse)
    services.orders_watch_cutoffs(now=cutoff_of(order) - dt.timedelta(minutes=10), warning_minutes=30)
    case = cutoff_cases(order).get()
    client.force_login(user_with_role(Role.TRANSPORTATION, username="terry"))

    response = client.post(
        reverse("exceptions:case-resolve", args=[case.pk]),
        {"resolution": "reassign_carrier", "param_reassign_carrier_carrier": "FedEx", "reason": "FedEx collects late"},
    )

    assert response.status_code == 422
    page = response.content.decode()
    assert (
        f"Nothing was changed: {warehouse.code} has no pickup for FedEx standard. Book one it has: UPS express." in page
    )
    assert 'value="reassign_carrier" required checked' in page and 'value="FedEx"' in page
    assert 'value="FedEx collects late"' in page
    case.refresh_from_db()
    order.refresh_from_db()
    assert (case.status, order.carrier) == ("open", "DPD")


def test_a_shipped_order_cannot_be_rebooked(warehouse, customer, tape):
    from portal.domain import TransitionRefused

    order = due_on(0, customer, warehouse)
    pack(order)
    services.shipment_ship(
        shipment=Shipment.objects.get(order=order), carrier="DPD", tracking_number="T2", actor=Actor.partner("tms")
    )
    with pytest.raises(TransitionRefused, match="can no longer change"):
        services.order_set_carrier(order=order, carrier="UPS", actor=SAM, reason="Too late")
    assert Order.objects.get(pk=order.pk).carrier == "DPD"


@pytest.mark.parametrize(
    ("local_time", "due"),
    [
        (dt.time(9, 0), "today"),
        (dt.time(15, 29), "today"),  # 31 minutes before the 16:00 pickup
        (dt.time(15, 31), "tomorrow"),  # inside the 30-minute warning window: already a cutoff case
        (dt.time(19, 0), "tomorrow"),  # today's pickup has gone
    ],
)
def test_demo_orders_ask_for_today_only_while_todays_pickup_can_be_made(warehouse, settings, local_time, due):
    from orchestration.demo import first_ship_day

    settings.CUTOFF_WARNING_MINUTES = 30
    type(warehouse).objects.filter(pk=warehouse.pk).update(default_cutoff_time=dt.time(16, 0), time_zone="Asia/Tokyo")
    warehouse.refresh_from_db()
    today = dt.date(2026, 3, 10)
    now = dt.datetime.combine(today, local_time, tzinfo=services.local_now(warehouse).tzinfo)

    day = first_ship_day(warehouse, carrier="DPD", service_level="standard", now=now)

    assert day == (today if due == "today" else today + dt.timedelta(days=1))
