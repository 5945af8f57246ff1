"""Retention of the message logs: finished logs past the period go, in batches; work someone owns stays."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations import tasks
from integrations.models import (
    InboundEvent,
    InboundRequest,
    OutboundAction,
    OutboundAttempt,
    OutboundMessage,
    Partner,
)
from integrations.services import message_logs_prune
from portal.actors import Actor

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("test")
NOW = timezone.now()
OLD = NOW - dt.timedelta(days=120)
RECENT = NOW - dt.timedelta(days=10)
E, M = InboundEvent.Status, OutboundMessage.Status


@pytest.fixture
def logs(db) -> dict[str, set[int]]:
    """Old and recent logs in every state; returns the ids a 90-day prune must keep, per kind."""
    partner = Partner.objects.create(code="wms-r", name="WMS", kind=Partner.Kind.WMS)

    def request(at):
        return InboundRequest.objects.create(
            partner=partner, method="POST", path="/api/v1/orders", status_code=201, received_at=at
        )

    def event(status, at):
        return InboundEvent.objects.create(
            partner=partner, event_id=f"ev-{InboundEvent.objects.count()}", type="task.completed", subject_key="task:1",
            occurred_at=at, payload={}, status=status, received_at=at,
        )  # fmt: skip

    def message(status, at):
        return OutboundMessage.objects.create(
            partner=partner, message_type="order.released", ordering_key="order:SO1", payload={}, status=status,
            created_at=at,
        )  # fmt: skip

    for _ in range(5):
        request(OLD)
    delivered = message(M.DELIVERED, OLD)
    OutboundAttempt.objects.create(message=delivered, number=1, outcome="delivered")
    OutboundAction.objects.create(
        message=delivered, kind="replay", actor="user:ivy", reason="x", previous_status="dead"
    )
    for _ in range(3):
        event(E.PROCESSED, OLD)
    event(E.IGNORED, OLD)
    message(M.DISCARDED, OLD)
    return {
        "requests": {request(RECENT).pk},
        "events": {event(E.FAILED, OLD).pk, event(E.PENDING, OLD).pk, event(E.PROCESSED, RECENT).pk},
        "messages": {
            message(M.DEAD, OLD).pk,
            message(M.PENDING, OLD).pk,
            message(M.SENDING, OLD).pk,
            message(M.DELIVERED, RECENT).pk,
        },
    }


def kept() -> dict[str, set[int]]:
    return {
        "requests": set(InboundRequest.objects.values_list("pk", flat=True)),
        "events": set(InboundEvent.objects.values_list("pk", flat=True)),
        "messages": set(OutboundMessage.objects.values_list("pk", flat=True)),
    }


def test_finished_logs_past_the_period_go_in_batches_and_owned_work_stays(logs):
    batches = []

    counts = message_logs_prune(
        older_than=NOW - dt.timedelta(days=90), actor=ACTOR, batch_size=2, progress=lambda *step: batches.append(step)
    )

    assert counts == {"inbound_requests": 5, "inbound_events": 4, "outbound_messages": 2}
    assert kept() == logs
    assert not OutboundAttempt.objects.exists() and not OutboundAction.objects.exists()  # went with their message
    assert batches == [
        ("inbound_requests", 2), ("inbound_requests", 4), ("inbound_requests", 5),
        ("inbound_events", 2), ("inbound_events", 4),
        ("outbound_messages", 2),
    ]  # fmt: skip


def test_a_dry_run_counts_and_deletes_nothing(logs):
    before = kept()
    counts = message_logs_prune(older_than=NOW - dt.timedelta(days=90), actor=ACTOR, dry_run=True)
    assert counts == {"inbound_requests": 5, "inbound_events": 4, "outbound_messages": 2}
    assert kept() == before


def test_the_hourly_task_follows_the_setting_and_zero_keeps_everything(logs, settings):
    before = kept()
    settings.MESSAGE_LOG_RETENTION_DAYS = 0
    assert tasks.prune_message_logs() == {}
    assert kept() == before

    settings.MESSAGE_LOG_RETENTION_DAYS = 90
    assert tasks.prune_message_logs() == {"inbound_requests": 5, "inbound_events": 4, "outbound_messages": 2}
    assert kept() == logs

    settings.MESSAGE_LOG_RETENTION_DAYS = 5  # a shorter period takes the recent finished ones too
    assert tasks.prune_message_logs() == {"inbound_requests": 1, "inbound_events": 1, "outbound_messages": 1}


def test_the_command_shows_what_it_did_and_refuses_nonsense(logs):
    out = StringIO()
    call_command("prune_message_logs", "--days", "90", "--dry-run", stdout=out)
    assert "API requests: 5 would be deleted" in out.getvalue()
    assert InboundRequest.objects.count() == 6

    out = StringIO()
    call_command("prune_message_logs", "--days", "90", "--batch-size", "3", stdout=out)
    text = out.getvalue()
    assert "API requests: 3 deleted so far" in text and "API requests: 5 deleted" in text
    assert "delivered or discarded partner messages: 2 deleted" in text
    assert kept() == logs

    for bad in (["--days", "0"], ["--batch-size", "0"]):
        with pytest.raises(CommandError):
            call_command("prune_message_logs", *bad, stdout=StringIO())
    assert kept() == logs
