"""The partner event log: IT support finds an event, sees what became of it and what it waits behind, and
replays or discards a failed one — which closes its integration-failure case."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from django.urls import reverse
from django.utils import timezone

from exceptions.models import Case
from integrations.models import InboundEvent
from inventory.models import Location, StockMovement
from portal.models import DomainEvent
from portal.roles import Role
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.api_support import event

pytestmark = pytest.mark.django_db

OTHERS = [Role.WAREHOUSE_SUPERVISOR, Role.CUSTOMER_SERVICE, Role.FINANCE, Role.PROCUREMENT, Role.TRANSPORTATION]


@pytest.fixture
def post(wms, api_client, django_capture_on_commit_callbacks):  # noqa: F811
    """Post a signed event as the WMS and run what its commit schedules (the eager worker)."""
    client = api_client(wms[1])

    def send(body):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.event(body)
        assert response.status_code == 202, response.content
        return InboundEvent.objects.get(event_id=body["event_id"])

    return send


@pytest.fixture
def failed(network, post):  # noqa: F811
    """A stock arrival at a location that does not exist yet: failed, with its case."""
    stored = post(
        event(
            "stock.received",
            {"sku": "API-A", "warehouse": "DCA", "location": "NEW-01", "quantity": 3},
            event_id="ev-newloc",
        )
    )
    assert stored.status == InboundEvent.Status.FAILED
    assert Case.objects.active().filter(type__code="integration_failure", subject_id=str(stored.pk)).exists()
    return stored


def signed_in(client, user_with_role, *roles):
    client.force_login(user_with_role(*roles))
    return client


@pytest.mark.parametrize("role", OTHERS)
def test_only_it_support_and_operations_admin_see_or_touch_events(client, user_with_role, failed, role):
    signed_in(client, user_with_role, role)
    assert client.get(reverse("integrations:event-list")).status_code == 403
    assert client.get(reverse("integrations:event-detail", args=[failed.pk])).status_code == 403
    assert client.post(reverse("integrations:event-replay", args=[failed.pk]), {"reason": "x"}).status_code == 403
    assert client.post(reverse("integrations:event-discard", args=[failed.pk]), {"reason": "x"}).status_code == 403
    failed.refresh_from_db()
    assert failed.status == InboundEvent.Status.FAILED


def test_the_log_filters_and_finds_by_event_id_order_or_subject(
    client, user_with_role, failed, post, django_assert_max_num_queries
):
    post(
        event(
            "stock.received", {"sku": "API-B", "warehouse": "DCA", "location": "P-01", "quantity": 2}, event_id="ev-ok"
        )
    )
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    url = reverse("integrations:event-list")

    def shown(**query) -> list[str]:
        with django_assert_max_num_queries(8):
            response = client.get(url, query)
        assert response.status_code == 200
        return [row.event_id for row in response.context["page"]]

    assert shown() == ["ev-ok", "ev-newloc"]
    assert shown(status="failed") == ["ev-newloc"]
    assert shown(status="processed") == ["ev-ok"]
    assert shown(type="stock.received", partner="wms-a") == ["ev-ok", "ev-newloc"]
    assert shown(partner="erp-a") == []
    assert shown(q="ev-newloc") == ["ev-newloc"]
    assert shown(q=failed.subject_key) == ["ev-newloc"]
    assert shown(q="nothing-like-it") == []
    assert shown(status="bogus", type="no.such.type") == ["ev-ok", "ev-newloc"]  # unknown filters are dropped


def test_an_event_page_says_what_a_pending_event_waits_behind(client, user_with_role, wms):  # noqa: F811
    partner = wms[0]
    now = timezone.now()

    def stored(event_id: str, **fields) -> InboundEvent:
        return InboundEvent.objects.create(
            partner=partner,
            event_id=event_id,
            type="task.started",
            subject_key="task:7",
            occurred_at=now,
            payload={"task_id": 7},
            **fields,
        )

    head = stored("ev-head", next_attempt_at=now + dt.timedelta(minutes=2), attempts=1, last_error="OperationalError")
    behind = stored("ev-behind")
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    response = client.get(reverse("integrations:event-detail", args=[behind.pk]))
    assert response.context["blocker"] == head
    assert "Waiting behind" in response.content.decode()
    assert response.context["can_replay"] is False and response.context["can_discard"] is False
    assert client.get(reverse("integrations:event-detail", args=[head.pk])).context["blocker"] is None


def test_replay_from_the_page_applies_the_event_and_closes_its_case(
    client, user_with_role, failed, network, django_capture_on_commit_callbacks
):
    client.force_login(user_with_role(Role.IT_SUPPORT, username="ivy"))
    detail = reverse("integrations:event-detail", args=[failed.pk])
    body = html.unescape(client.get(detail).content.decode())
    assert '"location": "NEW-01"' in body and "Replay" in body and "Discard" in body

    # no reason: refused, nothing changes
    response = client.post(reverse("integrations:event-replay", args=[failed.pk]), {"reason": " "}, follow=True)
    assert "A reason is required" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == InboundEvent.Status.FAILED

    Location.objects.create(warehouse=network, code="NEW-01", zone="A", kind=Location.Kind.PICK)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("integrations:event-replay", args=[failed.pk]), {"reason": "Location created"})
    assert response.status_code == 302 and response["Location"] == detail

    failed.refresh_from_db()
    assert failed.status == InboundEvent.Status.PROCESSED and failed.attempts == 2
    assert StockMovement.objects.filter(stock_level__location__code="NEW-01", on_hand_delta=3).count() == 1
    case = Case.objects.get(type__code="integration_failure", subject_id=str(failed.pk))
    assert case.status == Case.Status.AUTO_RESOLVED and case.resolved_by.startswith("system:")
    (replayed,) = DomainEvent.objects.filter(name="inbound_event.replayed", subject_id=str(failed.pk))
    assert (replayed.actor, replayed.reason, replayed.payload["previous_status"]) == (
        "user:ivy",
        "Location created",
        "failed",
    )
    assert "Replayed</strong> by user:ivy" in client.get(detail).content.decode()
    # processed: a second replay is refused and would not apply it twice
    client.post(reverse("integrations:event-replay", args=[failed.pk]), {"reason": "again"})
    assert StockMovement.objects.filter(stock_level__location__code="NEW-01").count() == 1


def test_discard_from_the_page_closes_the_case_with_the_reason(client, user_with_role, failed):
    signed_in(client, user_with_role, Role.OPERATIONS_ADMIN)
    client.post(reverse("integrations:event-discard", args=[failed.pk]), {"reason": "Sent under two ids"})
    failed.refresh_from_db()
    assert failed.status == InboundEvent.Status.IGNORED
    assert failed.last_error.endswith("Sent under two ids")
    case = Case.objects.get(type__code="integration_failure", subject_id=str(failed.pk))
    assert case.status == Case.Status.AUTO_RESOLVED
    assert case.resolved_by.startswith("user:")
    assert "Sent under two ids" in case.resolution_note
    assert DomainEvent.objects.filter(
        name="inbound_event.discarded", subject_id=str(failed.pk), reason="Sent under two ids"
    ).exists()


def test_the_case_page_links_to_the_failed_event(client, user_with_role, failed):
    case = Case.objects.get(type__code="integration_failure", subject_id=str(failed.pk))
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    response = client.get(case.get_absolute_url())
    assert response.status_code == 200
    assert f'href="{reverse("integrations:event-detail", args=[failed.pk])}"' in response.content.decode()


def test_machine_heartbeats_are_left_out_unless_asked_for(client, user_with_role, wms):  # noqa: F811
    now = timezone.now()
    for event_id, kind in [("hb-1", "wcs.heartbeat"), ("ev-1", "task.started"), ("hb-2", "wcs.heartbeat")]:
        InboundEvent.objects.create(
            partner=wms[0], event_id=event_id, type=kind, subject_key="x", occurred_at=now, payload={}
        )
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    url = reverse("integrations:event-list")

    def shown(**query) -> list[str]:
        return [row.event_id for row in client.get(url, query).context["page"]]

    assert shown() == ["ev-1"]
    assert shown(heartbeats="1") == ["hb-2", "ev-1", "hb-1"]
    assert shown(type="wcs.heartbeat") == ["hb-2", "hb-1"]
    assert shown(q="hb-1") == ["hb-1"]  # searched for by id: found
