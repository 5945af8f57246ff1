"""Pausing a partner's deliveries for its maintenance window: messages wait instead of burning attempts and
becoming dead letters, then go out in order; the pause is recorded, bounded and IT support's to take."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations import delivery, services
from integrations.models import OutboundMessage, Partner
from integrations.outbound import message_send
from portal.actors import Actor
from portal.domain import InvalidInput, PermissionRefused
from portal.models import DomainEvent
from portal.roles import Role

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")
Status = OutboundMessage.Status


@pytest.fixture
def erp(erp_on_receiver):
    return erp_on_receiver(max_attempts=2)


def send(erp, n: int) -> OutboundMessage:
    return message_send(
        partner_kind="erp",
        partner=erp,
        message_type="order.accepted",
        payload={"order": "SO1", "n": n},
        ordering_key="order:SO1",
        order_number="SO1",
        actor=SYSTEM,
    )


def pause(erp, minutes: float = 60, actor: Actor = SYSTEM, reason: str = "ERP upgrade") -> Partner:
    return services.partner_deliveries_pause(
        partner_id=erp.pk, until=timezone.now() + dt.timedelta(minutes=minutes), actor=actor, reason=reason
    )


def test_a_paused_partner_gets_nothing_and_its_messages_keep_their_attempts_until_the_pause_ends(erp, receiver):
    pause(erp)
    messages = [send(erp, n) for n in range(3)]

    assert delivery.message_deliver(message_id=messages[0].pk) == "partner_paused"
    assert delivery.due_messages_claim() == []  # the tick leaves them too
    assert receiver.books["erp"].received == 0
    assert set(OutboundMessage.objects.values_list("status", "attempts")) == {(Status.PENDING, 0)}
    assert OutboundMessage.objects.get(pk=messages[0].pk).claimed_until is None  # free for the tick afterwards

    later = timezone.now() + dt.timedelta(minutes=61)  # the pause ran out by itself
    for message in messages:
        claimed = delivery.due_messages_claim(now=later)
        assert claimed == [message.pk]  # one at a time: each waits for the one before it
        assert delivery.message_deliver(message_id=message.pk, now=later) == "delivered"
    book = receiver.books["erp"]
    assert [entry["message_id"] for entry in book.sequence] == [message.pk for message in messages]
    assert book.out_of_order == 0 and book.duplicates == 0


def test_resuming_early_lets_the_tick_send_what_waited(erp, receiver):
    pause(erp)
    message = send(erp, 1)
    assert delivery.message_deliver(message_id=message.pk) == "partner_paused"  # the task its commit queued
    services.partner_deliveries_resume(partner_id=erp.pk, actor=SYSTEM, reason="Upgrade done early")
    assert delivery.due_messages_claim() == [message.pk]
    assert delivery.message_deliver(message_id=message.pk) == "delivered"
    erp.refresh_from_db()
    assert erp.deliveries_paused_until is None and erp.deliveries_pause_reason == ""


def test_without_a_pause_the_same_outage_makes_dead_letters(erp, receiver):
    """What the pause is for: the partner down, two attempts, a dead letter."""
    with receiver.lock:
        receiver.faults["erp"].update({"outage_seconds": 3600})
    message = send(erp, 1)
    now = timezone.now()
    for attempt in range(2):
        delivery.message_deliver(message_id=message.pk, now=now + dt.timedelta(hours=attempt))
    message.refresh_from_db()
    assert message.status == Status.DEAD


def test_pause_and_resume_are_recorded_with_who_and_why(erp, user_with_role):
    person = Actor.for_user(user_with_role(Role.IT_SUPPORT, username="ivy"))
    pause(erp, actor=person, reason="ERP upgrade 02:00-04:00")
    services.partner_deliveries_resume(partner_id=erp.pk, actor=person, reason="Done")
    history = list(erp.history.order_by("history_date").values_list("history_actor", "history_reason"))
    assert history[-2:] == [("user:ivy", "ERP upgrade 02:00-04:00"), ("user:ivy", "Done")]
    assert list(DomainEvent.objects.filter(subject_id=str(erp.pk)).order_by("id").values_list("name", flat=True)) == [
        "partner.deliveries_paused",
        "partner.deliveries_resumed",
    ]


@pytest.mark.parametrize(
    "minutes, reason, refusal",
    [
        (60, " ", "A reason is required"),
        (-1, "late", "must end in the future"),
        (60 * 25, "long", "24 hours at most"),
    ],
)
def test_a_pause_needs_a_reason_a_future_end_and_at_most_a_day(erp, minutes, reason, refusal):
    with pytest.raises(InvalidInput, match=refusal):
        pause(erp, minutes=minutes, reason=reason)
    erp.refresh_from_db()
    assert erp.deliveries_paused_until is None


def test_only_it_support_or_operations_admin_may_pause(erp, user_with_role):
    with pytest.raises(PermissionRefused):
        pause(erp, actor=Actor.for_user(user_with_role(Role.WAREHOUSE_SUPERVISOR)))
    erp.refresh_from_db()
    assert erp.deliveries_paused_until is None


# --- from the monitor ----------------------------------------------------------------------------


def test_the_monitor_pauses_shows_and_resumes_a_partner(client, user_with_role, erp):
    client.force_login(user_with_role(Role.IT_SUPPORT))
    url = reverse("integrations:partner-pause", args=[erp.pk])

    client.post(url, {"minutes": "999", "reason": "x"})  # not one of the offered lengths
    client.post(url, {"minutes": "120", "reason": ""})  # no reason
    erp.refresh_from_db()
    assert erp.deliveries_paused_until is None

    response = client.post(url, {"minutes": "120", "reason": "ERP upgrade"}, follow=True)
    erp.refresh_from_db()
    assert dt.timedelta(minutes=119) < erp.deliveries_paused_until - timezone.now() <= dt.timedelta(minutes=120)
    (tile,) = response.context["health"]
    assert tile["state"] == "paused" and tile["paused"]
    body = response.content.decode()
    assert "Deliveries paused until" in body and "ERP upgrade" in body and "Resume deliveries" in body

    client.post(reverse("integrations:partner-resume", args=[erp.pk]), {"reason": "Done"})
    erp.refresh_from_db()
    assert erp.deliveries_paused_until is None


@pytest.mark.parametrize("role", [Role.WAREHOUSE_SUPERVISOR, Role.CUSTOMER_SERVICE, Role.FINANCE])
def test_other_roles_cannot_pause_from_the_monitor(client, user_with_role, erp, role):
    client.force_login(user_with_role(role))
    response = client.post(reverse("integrations:partner-pause", args=[erp.pk]), {"minutes": "60", "reason": "x"})
    assert response.status_code == 403
    erp.refresh_from_db()
    assert erp.deliveries_paused_until is None
