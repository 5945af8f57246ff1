"""The event queue stays cheap to claim from when a backlog arrives after statistics saw nothing pending."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from integrations.models import InboundEvent, Partner
from tests.integrations.api_support import make_partner

pytestmark = pytest.mark.django_db

SETTLED, BACKLOG, SUBJECTS = 20_000, 5_000, 100


def insert_events(partner: Partner, *, count: int, status: str, prefix: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO integrations_inboundevent (partner_id, event_id, type, subject_key, occurred_at, payload,"
            " status, attempts, last_error, duplicates, order_number, received_at)"
            " SELECT %s, %s || n, 'stock.received', 'item:' || (n %% %s), now(), '{}', %s, 0, '', 0, '', now()"
            " FROM generate_series(1, %s) AS n",
            [partner.pk, prefix, SUBJECTS, status, count],
        )


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def test_a_subjects_head_is_found_without_walking_a_backlog_the_statistics_have_not_seen():
    partner, _ = make_partner("wms", Partner.Kind.WMS, ["events:write"])
    insert_events(partner, count=SETTLED, status=InboundEvent.Status.PROCESSED, prefix="settled-")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE integrations_inboundevent")  # statistics say: nothing is pending
    insert_events(partner, count=BACKLOG, status=InboundEvent.Status.PENDING, prefix="burst-")

    head = (
        InboundEvent.objects.filter(subject_key="item:7", status=InboundEvent.Status.PENDING)
        .order_by("id")
        .values_list("id", flat=True)[:1]
    )
    explained = json.loads(head.explain(format="json", analyze=True, buffers=True))[0]["Plan"]

    scans = [node for node in plan_nodes(explained) if "Index Name" in node or node["Node Type"] == "Seq Scan"]
    assert [node.get("Index Name") for node in scans] == ["inbound_event_queue_idx"]
    # A handful of index pages, not the backlog's (5,000 pending events read through a status index: ~100).
    assert explained["Shared Hit Blocks"] + explained.get("Shared Read Blocks", 0) <= 10
    assert list(head) == [
        InboundEvent.objects.filter(event_id="burst-7").values_list("id", flat=True).get()
    ]  # the oldest pending event of the subject


def test_the_partner_queues_are_analyzed_after_a_fixed_number_of_changes_not_a_share_of_the_table():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
            [["integrations_inboundevent", "integrations_outboundmessage"]],
        )
        options = dict(cursor.fetchall())

    for table in ("integrations_inboundevent", "integrations_outboundmessage"):
        assert "autovacuum_analyze_scale_factor=0" in options[table]
        assert "autovacuum_analyze_threshold=2000" in options[table]
