"""The integration monitor: IT support and operations admins only, bounded queries, replay from the page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains

from integrations.models import OutboundAction, OutboundMessage, Partner
from integrations.outbound import message_send
from portal.actors import Actor
from portal.roles import Role

ACTOR = Actor.system("test")
Status = OutboundMessage.Status
# Session and user, health (4), traffic (3 streams and their partners), inbound events (3), dead letters, messages.
MONITOR_QUERIES = 18


@pytest.fixture
def messages_by_partner(db):
    """Three partners with messages in every state."""
    made = []
    for kind in ("erp", "wms", "tms"):
        partner = Partner.objects.create(code=kind, name=kind.upper(), kind=kind, outbound_base_url="http://x/")
        for n, status in enumerate([Status.PENDING, Status.DELIVERED, Status.DEAD, Status.DEAD, Status.DISCARDED]):
            message = message_send(
                partner_kind=kind,
                partner=partner,
                message_type="order.accepted",
                payload={"n": n},
                ordering_key=f"order:{kind}{n}",
                order_number=f"SO{n}",
                actor=ACTOR,
            )
            OutboundMessage.objects.filter(pk=message.pk).update(status=status, last_error="HTTP 500: boom")
            made.append(message.pk)
    return made


def signed_in(client, user_with_role, *roles):
    user = user_with_role(*roles)
    client.force_login(user)
    return user


@pytest.mark.parametrize(
    "role", [Role.WAREHOUSE_SUPERVISOR, Role.CUSTOMER_SERVICE, Role.FINANCE, Role.PROCUREMENT, Role.TRANSPORTATION]
)
def test_other_roles_get_403(client, user_with_role, messages_by_partner, role):
    signed_in(client, user_with_role, role)
    assert client.get(reverse("integrations:monitor")).status_code == 403
    pk = messages_by_partner[2]
    assert client.get(reverse("integrations:message-detail", args=[pk])).status_code == 403
    response = client.post(reverse("integrations:message-replay", args=[pk]), {"reason": "try"})
    assert response.status_code == 403
    assert OutboundMessage.objects.get(pk=pk).status == Status.DEAD


def test_signed_out_people_are_sent_to_login(client):
    response = client.get(reverse("integrations:monitor"))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("role", [Role.IT_SUPPORT, Role.OPERATIONS_ADMIN])
def test_the_monitor_shows_health_dead_letters_and_messages_in_bounded_queries(
    client, user_with_role, messages_by_partner, role, django_assert_max_num_queries
):
    signed_in(client, user_with_role, role)
    with django_assert_max_num_queries(MONITOR_QUERIES):
        response = client.get(reverse("integrations:monitor"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Dead letters (6)" in body
    assert "blocks later messages with the same ordering key" in body
    health = {row["partner"].code: row for row in response.context["health"]}
    assert health["erp"]["backlog"] == 1 and health["erp"]["dead"] == 2 and health["erp"]["state"] == "failing"

    # ten times the messages: the same number of queries
    for _ in range(9):
        for pk in messages_by_partner:
            source = OutboundMessage.objects.get(pk=pk)
            source.pk = None
            source.idempotency_key = __import__("uuid").uuid4()
            source.save()
    with django_assert_max_num_queries(MONITOR_QUERIES):
        assert client.get(reverse("integrations:monitor"), {"status": "dead", "partner": "erp"}).status_code == 200


def test_message_detail_shows_payload_attempts_and_what_blocks_it(client, user_with_role, messages_by_partner):
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    dead_pk = messages_by_partner[2]
    dead = OutboundMessage.objects.get(pk=dead_pk)
    waiting = message_send(
        partner_kind="erp",
        partner=dead.partner,
        message_type="order.released",
        payload={"after": True},
        ordering_key=dead.ordering_key,
        actor=ACTOR,
    )

    response = client.get(reverse("integrations:message-detail", args=[waiting.pk]))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Waiting behind" in body and f"#{dead_pk}" in body
    assert "&quot;after&quot;: true" in body


def test_replay_with_a_corrected_payload_from_the_page(client, user_with_role, messages_by_partner):
    user = signed_in(client, user_with_role, Role.IT_SUPPORT)
    pk = messages_by_partner[2]
    url = reverse("integrations:message-replay", args=[pk])

    refused = client.post(url, {"reason": "", "payload": '{"n": 99}'}, follow=True)
    assert "A reason is required." in refused.content.decode()
    bad_json = client.post(url, {"reason": "fix", "payload": "{nope"}, follow=True)
    assert "not valid JSON" in bad_json.content.decode()
    assert OutboundMessage.objects.get(pk=pk).status == Status.DEAD

    client.post(url, {"reason": "Customer code corrected", "payload": '{"n": 99}'})

    message = OutboundMessage.objects.get(pk=pk)
    assert message.status == Status.PENDING and message.payload == {"n": 99} and message.corrected_from == {"n": 2}
    action = message.actions.get()
    assert action.kind == OutboundAction.Kind.CORRECT and action.actor == f"user:{user.username}"


def test_bulk_replay_reports_each_item(client, user_with_role, messages_by_partner):
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    dead = list(OutboundMessage.objects.filter(status=Status.DEAD, partner__code="erp").values_list("pk", flat=True))
    delivered = OutboundMessage.objects.filter(status=Status.DELIVERED).values_list("pk", flat=True).first()
    url = reverse("integrations:messages-replay-bulk")

    no_reason = client.post(url, {"message": dead, "reason": ""}, follow=True)
    assert "A reason is required." in no_reason.content.decode()

    response = client.post(url, {"message": [*dead, delivered], "reason": "ERP back online"}, follow=True)

    body = response.content.decode()
    assert f"Replayed 2: #{dead[0]}, #{dead[1]}." in body
    assert f"#{delivered} not replayed:" in body
    assert OutboundMessage.objects.filter(pk__in=dead, status=Status.PENDING).count() == 2


def test_the_monitor_shows_each_event_senders_backlog_retries_and_failures(client, user_with_role):
    from django.utils import timezone

    from integrations.models import InboundEvent

    now = timezone.now()
    wms = Partner.objects.create(code="wms", name="WMS", kind="wms", scopes=[Partner.Scope.EVENTS_WRITE.value])
    quiet = Partner.objects.create(code="wcs", name="WCS", kind="wcs", scopes=[Partner.Scope.EVENTS_WRITE.value])
    Partner.objects.create(code="erp", name="ERP", kind="erp", scopes=[Partner.Scope.ORDERS_WRITE.value])

    def stored(event_id: str, status: str, *, received_minutes_ago: float = 0, retry_in_minutes: float | None = None):
        InboundEvent.objects.create(
            partner=wms,
            event_id=event_id,
            type="stock.received",
            subject_key=f"stock:DCA:{event_id}",
            occurred_at=now,
            payload={},
            status=status,
            received_at=now - dt.timedelta(minutes=received_minutes_ago),
            next_attempt_at=now + dt.timedelta(minutes=retry_in_minutes) if retry_in_minutes else None,
        )

    stored("e-1", "pending", received_minutes_ago=5)
    stored("e-2", "pending", received_minutes_ago=1, retry_in_minutes=2)
    stored("e-3", "pending")
    stored("e-4", "processed", received_minutes_ago=30)
    signed_in(client, user_with_role, Role.IT_SUPPORT)

    response = client.get(reverse("integrations:monitor"))

    rows = {row["partner"].code: row for row in response.context["inbound"]}
    assert set(rows) == {"wms", "wcs"}  # the ERP posts no events
    assert (rows["wms"]["waiting"], rows["wms"]["retrying"], rows["wms"]["failed"]) == (3, 1, 0)
    assert 299 <= rows["wms"]["oldest_waiting_seconds"] <= 330
    assert rows["wms"]["state"] == "degraded"  # waiting for minutes, and one held for a retry
    assert (rows["wcs"]["waiting"], rows["wcs"]["state"]) == (0, "ok")
    assertContains(response, "Inbound events")

    stored("e-5", "failed")
    quiet.is_enabled = False
    quiet.save()
    rows = {row["partner"].code: row for row in client.get(reverse("integrations:monitor")).context["inbound"]}
    assert (rows["wms"]["failed"], rows["wms"]["state"]) == (1, "failing")
    assert rows["wcs"]["state"] == "disabled"
