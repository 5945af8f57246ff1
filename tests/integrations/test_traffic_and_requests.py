"""IT support's view of partner traffic: the API request log, its detail, each partner's last hour, traffic per
half hour on the monitor, and links that only go where the viewer may follow."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations import selectors, services
from integrations.models import InboundEvent, InboundRequest, OutboundAttempt, Partner
from integrations.outbound import message_send
from orchestration.models import Order
from portal.roles import Role
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.test_outbound_monitor import MONITOR_QUERIES

pytestmark = pytest.mark.django_db

MONITOR = [Role.IT_SUPPORT, Role.OPERATIONS_ADMIN]
OTHERS = [Role.WAREHOUSE_SUPERVISOR, Role.CUSTOMER_SERVICE, Role.FINANCE, Role.PROCUREMENT, Role.TRANSPORTATION]


@pytest.fixture
def traffic(network, erp, api_client):  # noqa: F811
    """Through the real API: one accepted order (ERP-OK) and two refused ones (ERP-BAD: unknown SKU; bad JSON)."""
    partner, token = erp
    client = api_client(token)
    accepted = client.post("/api/v1/orders", order_body("ERP-OK"))  # noqa: F405
    assert accepted.status_code == 201, accepted.content
    refused = client.post("/api/v1/orders", order_body("ERP-BAD", lines=[{"line_no": 1, "sku": "NOPE", "quantity": 1}]))  # noqa: F405
    assert refused.status_code == 422, refused.content
    assert client.post("/api/v1/orders", raw=b"{not json").status_code == 400
    return {"partner": partner, "order": Order.objects.get(external_ref="ERP-OK")}


def signed_in(client, user_with_role, *roles):
    client.force_login(user_with_role(*roles))
    return client


def at(minutes_ago: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(minutes=minutes_ago)


# --- who may look ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", OTHERS)
def test_only_it_support_and_operations_admin_see_the_request_log(client, user_with_role, traffic, role):
    signed_in(client, user_with_role, role)
    logged = InboundRequest.objects.first()
    assert client.get(reverse("integrations:request-list")).status_code == 403
    assert client.get(reverse("integrations:request-detail", args=[logged.pk])).status_code == 403


def test_signed_out_visitors_go_to_the_login(client, traffic):
    response = client.get(reverse("integrations:request-list"))
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- the request log -------------------------------------------------------------------------


@pytest.mark.parametrize("role", MONITOR)
def test_the_log_shows_each_request_with_its_answer_and_why_it_was_refused(client, user_with_role, traffic, role):
    signed_in(client, user_with_role, role)
    response = client.get(reverse("integrations:request-list"))
    assert response.status_code == 200
    rows = list(response.context["page"])
    assert [row.status_code for row in rows] == [400, 422, 201]  # newest first
    body = response.content.decode()
    assert traffic["order"].number in body
    assert "ERP-BAD" in body
    assert "lines.0.sku: Unknown or inactive SKU" in body  # the field error, not just "see fields"
    assert "The body is not valid JSON" in body


def test_the_log_filters_by_outcome_partner_and_reference(client, user_with_role, traffic, other_erp, api_client):  # noqa: F811
    _, other_token = other_erp
    assert api_client(other_token).post("/api/v1/orders", {"external_ref": "SHOP-1"}).status_code == 422
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    url = reverse("integrations:request-list")

    def shown(**query) -> list[tuple[str, int]]:
        page = client.get(url, query).context["page"]
        return [(row.partner.code, row.status_code) for row in page]

    assert shown(outcome="refused") == [("erp-b", 422), ("erp-a", 400), ("erp-a", 422)]
    assert shown(outcome="accepted") == [("erp-a", 201)]
    assert shown(partner="erp-b") == [("erp-b", 422)]
    assert shown(q="ERP-BAD") == [("erp-a", 422)]  # refused: found by the partner's own reference
    assert shown(q=traffic["order"].number.lower()) == [("erp-a", 201)]  # accepted: by our number, any case
    assert shown(q="NOTHING-LIKE-IT") == []
    assert shown(outcome="bogus") == shown()  # an unknown outcome shows everything rather than failing


def test_the_log_and_the_detail_take_a_fixed_number_of_queries(
    client,
    user_with_role,
    traffic,
    api_client,
    erp,
    django_assert_max_num_queries,  # noqa: F811
):
    _, token = erp
    for n in range(30):
        api_client(token).post("/api/v1/orders", {"external_ref": f"BAD-{n}"})
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    with django_assert_max_num_queries(10):
        assert client.get(reverse("integrations:request-list"), {"size": 100}).status_code == 200
    logged = InboundRequest.objects.filter(status_code=422).first()
    with django_assert_max_num_queries(6):
        assert client.get(reverse("integrations:request-detail", args=[logged.pk])).status_code == 200


def test_the_detail_shows_what_was_sent_and_answered(client, user_with_role, traffic):
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    refused = InboundRequest.objects.get(payload__external_ref="ERP-BAD")
    response = client.get(reverse("integrations:request-detail", args=[refused.pk]))
    body = html.unescape(response.content.decode())
    assert response.context["external_ref"] == "ERP-BAD"
    assert '"sku": "NOPE"' in body  # the payload as sent
    assert '"code": "invalid"' in body  # the error document sent back
    assert client.get(reverse("integrations:request-detail", args=[999999])).status_code == 404


def test_order_numbers_link_to_the_order_only_for_those_who_may_open_it(client, user_with_role, traffic):
    number = traffic["order"].number
    order_url = reverse("orchestration:order-detail", args=[number])
    accepted = InboundRequest.objects.get(order_number=number)
    for role, linked in ((Role.IT_SUPPORT, False), (Role.OPERATIONS_ADMIN, True)):
        signed_in(client, user_with_role, role)
        for url in (reverse("integrations:request-list"), reverse("integrations:request-detail", args=[accepted.pk])):
            body = client.get(url).content.decode()
            assert number in body
            assert (order_url in body) is linked, (role, url)


def test_the_last_hour_per_partner(traffic, other_erp, api_client):  # noqa: F811
    erp_partner = traffic["partner"]
    InboundRequest.objects.create(
        partner=erp_partner, method="POST", path="/api/v1/orders", status_code=422, received_at=at(90)
    )  # outside the hour
    InboundRequest.objects.filter(partner=erp_partner).update(duration_ms=10)
    InboundRequest.objects.filter(partner=erp_partner, status_code=400).update(duration_ms=200)
    summary = {row["partner__code"]: row for row in selectors.request_summary()}
    assert set(summary) == {"erp-a"}  # erp-b sent nothing
    row = summary["erp-a"]
    assert (row["total"], row["refused"], row["refused_percent"]) == (3, 2, 67)
    assert 10 < row["p95_ms"] <= 200
    assert row["last_refused"] == InboundRequest.objects.get(status_code=400).received_at


# --- traffic per half hour on the monitor -------------------------------------------------------------


def test_traffic_counts_each_stream_per_half_hour_and_leaves_quiet_partners_out(erp, wms):  # noqa: F811
    now = timezone.now().replace(minute=40, second=0, microsecond=0)
    erp_partner, wms_partner = erp[0], wms[0]
    Partner.objects.create(code="quiet", name="Quiet", kind=Partner.Kind.TMS)

    def request(status: int, minutes_ago: float):
        InboundRequest.objects.create(
            partner=erp_partner,
            method="POST",
            path="/api/v1/orders",
            status_code=status,
            received_at=now - dt.timedelta(minutes=minutes_ago),
        )

    request(201, 5)  # this half hour (:30–:40)
    request(422, 8)
    request(201, 15)  # the half hour before
    request(201, 60 * 7)  # outside the six hours
    for n, (status, minutes_ago) in enumerate(
        [(InboundEvent.Status.PROCESSED, 1), (InboundEvent.Status.FAILED, 2), (InboundEvent.Status.PROCESSED, 20)]
    ):
        InboundEvent.objects.create(
            partner=wms_partner,
            event_id=f"e{n}",
            type="task.completed",
            subject_key="task:1",
            occurred_at=now,
            payload={},
            status=status,
            received_at=now - dt.timedelta(minutes=minutes_ago),
        )
    message = message_send(
        partner_kind="wms",
        partner=wms_partner,
        message_type="order.released",
        payload={},
        ordering_key="order:x",
        order_number="SO1",
        actor=ACTOR,  # noqa: F405
    )
    for number, outcome in enumerate([OutboundAttempt.Outcome.RETRY, OutboundAttempt.Outcome.DELIVERED], start=1):
        OutboundAttempt.objects.create(
            message=message, number=number, outcome=outcome, started_at=now - dt.timedelta(minutes=3)
        )

    traffic = {row["partner"].code: row for row in selectors.partner_traffic(now=now)}
    assert set(traffic) == {"erp-a", "wms-a"}  # "quiet" had none
    erp_requests = traffic["erp-a"]["requests"]
    assert len(erp_requests["buckets"]) == 12
    assert [(b["ok"], b["failed"]) for b in erp_requests["buckets"][-2:]] == [(1, 0), (1, 1)]
    assert (erp_requests["total"], erp_requests["failed"], erp_requests["peak"]) == (3, 1, 2)
    assert erp_requests["buckets"][-1]["start"] == now.replace(minute=30)
    assert traffic["erp-a"]["events"]["total"] == 0
    wms_events = traffic["wms-a"]["events"]
    assert [(b["ok"], b["failed"]) for b in wms_events["buckets"][-2:]] == [(1, 0), (1, 1)]
    assert [(b["ok"], b["failed"]) for b in traffic["wms-a"]["deliveries"]["buckets"][-1:]] == [(1, 1)]


def test_the_monitor_shows_traffic_and_finds_messages_by_order(
    client, user_with_role, traffic, django_assert_max_num_queries
):
    number = traffic["order"].number
    message_send(
        partner_kind="erp",
        partner=traffic["partner"],
        message_type="order.accepted",
        payload={},
        ordering_key="order:other",
        order_number="SO999999",
        actor=ACTOR,  # noqa: F405
    )
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    with django_assert_max_num_queries(MONITOR_QUERIES):
        response = client.get(reverse("integrations:monitor"), {"order": number.lower()})
    assert response.status_code == 200
    shown = {message.order_number for message in response.context["page"]}
    assert shown == {number}
    assert [row["partner"].code for row in response.context["traffic"]] == ["erp-a"]
    body = response.content.decode()
    assert "API requests in" in body and "2 refused" in body
    assert f"{reverse('integrations:request-list')}?partner=erp-a&amp;outcome=refused" in body


# --- the order timeline ------------------------------------------------------------------------------


def test_the_timeline_links_partner_traffic_only_for_it_support_and_operations_admin(client, user_with_role, traffic):
    order = traffic["order"]
    detail = reverse("integrations:request-detail", args=[InboundRequest.objects.get(order_number=order.number).pk])
    for role, linked in ((Role.CUSTOMER_SERVICE, False), (Role.OPERATIONS_ADMIN, True)):
        signed_in(client, user_with_role, role)
        response = client.get(reverse("orchestration:order-detail", args=[order.number]))
        entries = [entry for entry in response.context["timeline"] if entry.extra.get("direction") == "inbound"]
        assert [entry.title.split(":")[0] for entry in entries] == ["POST /api/v1/orders from erp-a"]
        assert (detail in response.content.decode()) is linked, role
        outbound = [entry for entry in response.context["timeline"] if entry.extra.get("direction") == "outbound"]
        assert outbound and all(bool(entry.url) is linked for entry in outbound)


# --- IT support's home panel -------------------------------------------------------------------


def test_it_supports_home_shows_each_partner_both_ways(client, user_with_role, traffic, wms):  # noqa: F811
    wms_partner = wms[0]
    InboundEvent.objects.create(
        partner=wms_partner,
        event_id="ev-bad",
        type="task.started",
        subject_key="task:1",
        occurred_at=timezone.now(),
        payload={},
        status=InboundEvent.Status.FAILED,
    )
    services.partner_deliveries_pause(
        partner_id=wms_partner.pk,
        until=at(-30),
        actor=ACTOR,  # noqa: F405
        reason="WMS upgrade",
    )
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    response = client.get("/")
    (panel,) = [p for p in response.context["panels"] if p["key"] == "partners"]
    rows = {row["partner"].code: row for row in panel["partners"]}
    assert (rows["erp-a"]["requests"], rows["erp-a"]["refused"]) == (3, 2)
    assert rows["wms-a"]["events_failed"] == 1
    assert rows["wms-a"]["state"] == "failing"  # a failed event outweighs the pause
    assert rows["wms-a"]["paused_until"] is not None
    html = response.content.decode()
    assert 'id="panel-partners"' in html and reverse("integrations:partners-panel") in html

    fragment = client.get(reverse("integrations:partners-panel"))
    assert fragment.status_code == 200 and "erp-a" in fragment.content.decode()


def test_the_partner_panel_is_it_supports_alone(client, user_with_role, traffic):
    signed_in(client, user_with_role, Role.WAREHOUSE_SUPERVISOR)
    assert 'id="panel-partners"' not in client.get("/").content.decode()
    assert client.get(reverse("integrations:partners-panel")).status_code == 403


def test_the_partner_panel_costs_the_same_queries_however_many_partners(
    client, user_with_role, traffic, django_assert_max_num_queries
):
    signed_in(client, user_with_role, Role.IT_SUPPORT)
    url = reverse("integrations:partners-panel")
    with django_assert_max_num_queries(12):
        client.get(url)
    for n in range(10):
        Partner.objects.create(code=f"extra-{n}", name=f"Extra {n}", kind=Partner.Kind.WCS, scopes=["events:write"])
    with django_assert_max_num_queries(12):
        assert client.get(url).status_code == 200


def test_the_overview_counts_what_waits_without_reading_the_whole_message_log(erp):  # noqa: F811
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    partner = erp[0]
    for n, status in enumerate(["pending", "pending", "dead", "delivered", "delivered", "discarded"]):
        _message_in(partner, n, status=status)
    with CaptureQueriesContext(connection) as queries:
        (row,) = [row for row in selectors.partner_overview() if row["partner"] == partner]
    assert (row["backlog"], row["dead"], row["state"]) == (2, 1, "failing")
    full = {row["partner"].pk: row for row in selectors.partner_health()}[partner.pk]
    assert (full["backlog"], full["dead"], full["total"]) == (2, 1, 6)
    message_log_reads = [
        q["sql"] for q in queries.captured_queries if 'FROM "integrations_outboundmessage"' in q["sql"]
    ]
    assert message_log_reads and all("WHERE" in sql for sql in message_log_reads)
    assert len(queries.captured_queries) <= 9


def test_the_tiles_count_the_last_day_and_every_open_message_and_find_the_last_success_from_indexes(erp):  # noqa: F811
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    partner = erp[0]
    long_ago = timezone.now() - dt.timedelta(days=3)
    for n, (status, created, delivered) in enumerate(
        [
            ("delivered", long_ago, long_ago + dt.timedelta(minutes=5)),  # the last success, days ago
            ("dead", long_ago, None),  # old but still needs a person: counted
            ("discarded", long_ago, None),  # old and settled: not counted
            ("pending", timezone.now(), None),  # waiting today: counted
        ]
    ):
        _message_in(partner, n, status=status, created_at=created, delivered_at=delivered)
    with CaptureQueriesContext(connection) as queries:
        (row,) = [row for row in selectors.partner_health() if row["partner"] == partner]
    counted = row["by_status"]
    assert (counted["delivered"], counted["dead"], counted["discarded"], counted["pending"]) == (0, 1, 0, 1)
    assert row["last_success"] == long_ago + dt.timedelta(minutes=5)  # found however old
    log_reads = [q["sql"] for q in queries.captured_queries if '"integrations_outboundmessage"' in q["sql"]]
    assert log_reads and all("WHERE" in sql for sql in log_reads)
    assert len(queries.captured_queries) <= 4


def _message_in(partner, n: int, **fields) -> None:
    """Message `n` to `partner` (an order's), put straight into the state `fields` give it."""
    from integrations.models import OutboundMessage

    message = message_send(
        partner_kind="erp",
        partner=partner,
        message_type="order.accepted",
        payload={"n": n},
        ordering_key=f"order:{n}",
        order_number=f"SO{n}",
        actor=ACTOR,  # noqa: F405
    )
    OutboundMessage.objects.filter(pk=message.pk).update(**fields)
