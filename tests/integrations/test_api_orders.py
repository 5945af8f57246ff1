"""POST/GET /api/v1/orders, cancel and availability: auth, scopes, scoping to the partner's orders, one error format."""

from __future__ import annotations

import uuid

import pytest

from integrations import ratelimit
from integrations.models import InboundRequest, Partner, PartnerToken
from inventory.models import Reservation, StockLevel
from orchestration.models import Order
from portal.models import DomainEvent
from tests.integrations.api_support import *  # noqa: F403

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str, fields: set[str] | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    if fields is not None:
        assert set(body["error"]["fields"]) == fields, body
    return body["error"]


# --- authentication and scopes -----------------------------------------------------------


def test_no_token_is_401_in_the_one_format(client, network):
    response = client.post("/api/v1/orders", data=order_body(), content_type="application/json")  # noqa: F405
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Order.objects.exists()


@pytest.mark.parametrize("header", ["Bearer pt_not-a-real-token-at-all", "Basic dXNlcjpwYXNz", "Bearer", "pt_x"])
def test_a_bad_token_is_401(client, network, erp, header):
    response = client.get("/api/v1/availability", {"sku": "API-A"}, HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "not_authenticated")


def test_a_rotated_token_stops_working(network, erp, api_client):
    partner, old = erp
    from integrations.auth import partner_token_issue

    new = partner_token_issue(partner=partner, actor=ACTOR, reason="Rotate")  # noqa: F405
    assert api_client(old).get("/api/v1/availability", {"sku": "API-A"}).status_code == 401
    assert api_client(new).get("/api/v1/availability", {"sku": "API-A"}).status_code == 200
    assert PartnerToken.objects.filter(partner=partner, revoked_at__isnull=True).count() == 1


def test_a_disabled_partner_is_refused(network, erp, api_client):
    partner, token = erp
    Partner.objects.filter(pk=partner.pk).update(is_enabled=False)
    assert_error(api_client(token).get("/api/v1/availability", {"sku": "API-A"}), 401, "not_authenticated")


def test_a_partner_without_the_scope_is_403(network, wms, api_client):
    _, token = wms
    response = api_client(token).post("/api/v1/orders", order_body())  # noqa: F405
    error = assert_error(response, 403, "forbidden")
    assert "orders:write" in error["message"]
    assert not Order.objects.exists()


# --- creating an order -------------------------------------------------------------------


def test_an_order_is_created_allocated_and_released(network, erp, api_client):
    partner, token = erp
    body = order_body("PO-1")  # noqa: F405

    response = api_client(token).post("/api/v1/orders", body)

    assert response.status_code == 201, response.content
    document = response.json()
    order = Order.objects.get(source=partner.code, external_ref="PO-1")
    assert document["number"] == order.number
    assert document["status"] == order.status == Order.Status.RELEASED
    assert document["source"] == "erp-a"
    assert [(line["sku"], line["quantity"], line["allocated_quantity"]) for line in document["lines"]] == [
        ("API-A", 2, 2),
        ("API-B", 2, 2),
        ("API-C", 2, 2),
    ]
    assert [(r["line_no"], r["location"], r["quantity"], r["status"]) for r in document["reservations"]] == [
        (1, "P-01", 2, "reserved"),
        (2, "P-01", 2, "reserved"),
        (3, "P-01", 2, "reserved"),
    ]
    assert document["shipments"] == [] and document["open_exceptions"] == []
    received = DomainEvent.objects.get(name="order.received", subject_id=str(order.pk))
    assert received.actor == "partner:erp-a"
    logged = InboundRequest.objects.get(path="/api/v1/orders")
    assert (logged.partner, logged.status_code, logged.order_number) == (partner, 201, order.number)
    assert logged.payload == body


def test_an_order_short_of_stock_is_partially_allocated(network, erp, api_client):
    _, token = erp
    body = order_body("PO-2", lines=[{"line_no": 1, "sku": "API-A", "quantity": 150}])  # noqa: F405

    document = api_client(token).post("/api/v1/orders", body).json()

    assert document["lines"][0]["allocated_quantity"] == 100
    assert document["status"] in (Order.Status.PARTIALLY_ALLOCATED, Order.Status.RELEASED)


def test_order_intake_stays_within_its_query_budget(network, erp, api_client, django_assert_max_num_queries):
    """Token, customer and items, then create, validate, credit check, allocate, release with their history,
    events and partner messages, the answer's document and the request log: a fixed count for three lines."""
    client = api_client(erp[1])
    client.post("/api/v1/orders", order_body("PO-20"))  # noqa: F405  (warms the partner lookups)

    with django_assert_max_num_queries(43):
        response = client.post("/api/v1/orders", order_body("PO-21"))  # noqa: F405

    assert response.status_code == 201, response.content
    assert response.json()["status"] == Order.Status.RELEASED


def test_the_same_reference_twice_is_409_without_a_second_order(network, erp, api_client):
    _, token = erp
    first = api_client(token).post("/api/v1/orders", order_body("PO-3")).json()["number"]  # noqa: F405

    response = api_client(token).post("/api/v1/orders", order_body("PO-3"))  # noqa: F405

    error = assert_error(response, 409, "duplicate_external_ref", {"external_ref"})
    assert f"portal order {first}" in error["message"]  # where the partner finds the order it sent before
    assert Order.objects.filter(external_ref="PO-3").count() == 1


def test_two_partners_may_use_the_same_reference(network, erp, other_erp, api_client):
    assert api_client(erp[1]).post("/api/v1/orders", order_body("PO-4")).status_code == 201  # noqa: F405
    assert api_client(other_erp[1]).post("/api/v1/orders", order_body("PO-4")).status_code == 201  # noqa: F405
    assert set(Order.objects.filter(external_ref="PO-4").values_list("source", flat=True)) == {"erp-a", "erp-b"}


@pytest.mark.parametrize(
    "change, fields",
    [
        ({"customer": "nobody"}, {"customer"}),
        ({"lines": [{"line_no": 1, "sku": "NOPE", "quantity": 1}]}, {"lines.0.sku"}),
        ({"lines": [{"line_no": 1, "sku": "API-A", "quantity": 0}]}, {"lines.0.quantity"}),
        ({"lines": [{"line_no": 1, "sku": "API-A", "quantity": -3}]}, {"lines.0.quantity"}),
        ({"lines": [{"line_no": 1, "sku": "API-A", "quantity": 10**30}]}, {"lines.0.quantity"}),
        ({"lines": [{"line_no": 1, "sku": "API-A", "quantity": "two"}]}, {"lines.0.quantity"}),
        (
            {"lines": [{"line_no": 1, "sku": "API-A", "quantity": 1}, {"line_no": 1, "sku": "API-B", "quantity": 1}]},
            {"lines.1.line_no"},
        ),
        ({"lines": []}, {"lines"}),
        ({"lines": [{"line_no": i, "sku": "API-A", "quantity": 1} for i in range(1, 202)]}, {"lines"}),
        ({"external_ref": "x" * 65}, {"external_ref"}),
        ({"external_ref": "has/slash"}, {"external_ref"}),
        ({"ship_to": {"name": "A"}}, {"ship_to.lines", "ship_to.city", "ship_to.postal_code", "ship_to.country"}),
        ({"priority": 9}, {"priority"}),
        ({"requested_ship_date": "tomorrow"}, {"requested_ship_date"}),
        ({"customer": ["acme"]}, {"customer"}),
    ],
)
def test_invalid_orders_are_422_with_field_errors_and_change_nothing(network, erp, api_client, change, fields):
    stock_before = list(StockLevel.objects.values_list("reserved", flat=True))

    response = api_client(erp[1]).post("/api/v1/orders", {**order_body(), **change})  # noqa: F405

    assert_error(response, 422, "invalid", fields)
    assert not Order.objects.exists()
    assert not Reservation.objects.exists()
    assert list(StockLevel.objects.values_list("reserved", flat=True)) == stock_before
    assert not DomainEvent.objects.filter(name__startswith="order.").exists()


@pytest.mark.parametrize(
    "raw, status, code",
    [
        (b"{not json", 400, "invalid"),
        (b'{"a": NaN}', 400, "invalid"),
        (b'{"a": 1e400}', 400, "invalid"),
        (b'"\\u0000"', 400, "invalid"),
        (b'{"a": "\\ud800"}', 400, "invalid"),
        (b"\xff\xfe", 400, "invalid"),
        (b"[" * 5000 + b"]" * 5000, 400, "invalid"),
        (b"[]", 422, "invalid"),
        (b"null", 422, "invalid"),
    ],
)
def test_malformed_bodies_are_refused_in_the_one_format(network, erp, api_client, raw, status, code):
    assert_error(api_client(erp[1]).post("/api/v1/orders", raw=raw), status, code)
    assert not Order.objects.exists()


def test_a_wrong_content_type_is_415(network, erp, api_client):
    response = api_client(erp[1]).post("/api/v1/orders", raw=b"a=b", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_413(network, erp, api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    body = order_body(ship_to={**SHIP_TO, "name": "x" * 3000})  # noqa: F405
    assert_error(api_client(erp[1]).post("/api/v1/orders", body), 413, "too_large")
    assert not Order.objects.exists()


# --- reading, cancelling, scoping --------------------------------------------------------


def test_a_partner_reads_its_order_in_the_canonical_shape(network, erp, api_client, django_assert_max_num_queries):
    client = api_client(erp[1])
    created = client.post("/api/v1/orders", order_body("PO-5")).json()  # noqa: F405

    with django_assert_max_num_queries(10):
        response = client.get("/api/v1/orders/PO-5")

    assert response.status_code == 200
    read = response.json()
    assert read["number"] == created["number"]
    assert set(read) == {
        "number", "external_ref", "source", "status", "customer", "warehouse", "priority", "service_level",
        "requested_ship_date", "ship_to", "hold_reason", "created_at", "lines", "reservations", "shipments",
        "open_exceptions",
    }  # fmt: skip
    assert not InboundRequest.objects.filter(method="GET").exists()  # reads are not logged


def test_the_document_carries_the_shipments_with_their_lines_and_the_open_cases(network, erp, api_client):
    from exceptions.services import case_raise
    from orchestration import services as orchestration
    from orchestration.models import Task

    client = api_client(erp[1])
    client.post("/api/v1/orders", order_body("PO-9"))  # noqa: F405
    order = Order.objects.get(external_ref="PO-9")
    for task in Task.objects.filter(order=order, kind=Task.Kind.PICK).order_by("pk"):
        orchestration.task_dispatch(task=task, actor=ACTOR)  # noqa: F405
        orchestration.task_complete(task=task, actor=ACTOR)  # noqa: F405
    pack = Task.objects.get(order=order, kind=Task.Kind.PACK)
    orchestration.task_dispatch(task=pack, actor=ACTOR)  # noqa: F405
    orchestration.task_complete(task=pack, actor=ACTOR)  # noqa: F405
    shipment = order.shipments.get()
    orchestration.shipment_ship(shipment=shipment, carrier="DPD", tracking_number="TRK-9", actor=ACTOR)  # noqa: F405
    case = case_raise(
        type_code="address_invalid",
        subject=order,
        summary="Dock closed on Fridays",
        actor=ACTOR,  # noqa: F405
        reason="Carrier report",
        order_number=order.number,
    )

    document = client.get("/api/v1/orders/PO-9").json()

    (shipped,) = document["shipments"]
    assert (shipped["number"], shipped["status"], shipped["carrier"], shipped["tracking_number"]) == (
        shipment.number,
        "shipped",
        "DPD",
        "TRK-9",
    )
    assert shipped["shipped_at"]
    assert shipped["lines"] == [
        {"line_no": 1, "sku": "API-A", "quantity": 2},
        {"line_no": 2, "sku": "API-B", "quantity": 2},
        {"line_no": 3, "sku": "API-C", "quantity": 2},
    ]
    assert [(r["line_no"], r["status"], r["picked_quantity"], r["lot"]) for r in document["reservations"]] == [
        (1, "picked", 2, None),
        (2, "picked", 2, None),
        (3, "picked", 2, None),
    ]
    assert document["open_exceptions"] == [
        {
            "case_id": case.pk,
            "type": "address_invalid",
            "status": case.status,
            "severity": case.severity,
            "queue": case.queue.code,
            "summary": "Dock closed on Fridays",
            "opened_at": case.created_at.isoformat(),
        }
    ]


def test_a_partner_cannot_read_or_cancel_another_partners_order(network, erp, other_erp, api_client):
    api_client(erp[1]).post("/api/v1/orders", order_body("PO-6"))  # noqa: F405
    intruder = api_client(other_erp[1])

    assert_error(intruder.get("/api/v1/orders/PO-6"), 404, "not_found")
    assert_error(intruder.post("/api/v1/orders/PO-6/cancel", {"reason": "mine now"}), 404, "not_found")
    assert Order.objects.get(external_ref="PO-6").status == Order.Status.RELEASED


def test_an_unknown_or_odd_reference_is_404(network, erp, api_client):
    client = api_client(erp[1])
    assert_error(client.get("/api/v1/orders/nothing-here"), 404, "not_found")
    assert_error(client.get("/api/v1/orders/%00bad"), 404, "not_found")
    assert_error(client.get("/api/v1/orders/" + "x" * 500), 404, "not_found")


def test_cancel_needs_a_reason_and_releases_stock(network, erp, api_client):
    client = api_client(erp[1])
    client.post("/api/v1/orders", order_body("PO-7"))  # noqa: F405

    assert_error(client.post("/api/v1/orders/PO-7/cancel", {}), 422, "invalid", {"reason"})
    assert_error(client.post("/api/v1/orders/PO-7/cancel", {"reason": "  "}), 422, "invalid", {"reason"})
    response = client.post("/api/v1/orders/PO-7/cancel", {"reason": "Customer changed their mind"})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == Order.Status.CANCELLED
    assert all(r["status"] == "released" for r in response.json()["reservations"])
    assert not StockLevel.objects.filter(reserved__gt=0).exists()
    assert_error(client.post("/api/v1/orders/PO-7/cancel", {"reason": "again"}), 409, "transition_refused")


# --- availability ------------------------------------------------------------------------


def test_availability_per_warehouse(network, erp, api_client, django_assert_max_num_queries):
    client = api_client(erp[1])
    client.post("/api/v1/orders", order_body("PO-8"))  # noqa: F405

    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/availability", {"sku": "API-A", "warehouse": "DCA"})

    assert response.json() == {
        "sku": "API-A",
        "available": 98,
        "warehouses": [{"warehouse": "DCA", "on_hand": 100, "reserved": 2, "quarantined": 0, "available": 98}],
    }


@pytest.mark.parametrize(
    "params, fields",
    [({}, {"sku"}), ({"sku": "NOPE"}, {"sku"}), ({"sku": "API-A", "warehouse": "XX"}, {"warehouse"})],
)
def test_availability_refuses_unknown_things(network, erp, api_client, params, fields):
    assert_error(api_client(erp[1]).get("/api/v1/availability", params), 422, "invalid", fields)


def test_availability_refuses_nul_in_the_query(network, erp, api_client):
    assert_error(api_client(erp[1]).get("/api/v1/availability?sku=%00"), 422, "invalid", {"sku"})


# --- rate limit --------------------------------------------------------------------------


def test_over_the_rate_limit_is_429_with_retry_after(network, erp, api_client, monkeypatch):
    partner, token = erp
    code = f"rl-{uuid.uuid4().hex[:8]}"  # a counter of its own in the shared Redis database
    Partner.objects.filter(pk=partner.pk).update(rate_limit_per_minute=3, code=code)
    monkeypatch.setattr(ratelimit.time, "time", lambda: 1_800_000_015.0)  # 45 s before the window turns
    client = api_client(token)

    statuses = [client.get("/api/v1/availability", {"sku": "API-A"}).status_code for _ in range(3)]
    response = client.get("/api/v1/availability", {"sku": "API-A"})

    assert statuses == [200, 200, 200]
    assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "45"
    assert not InboundRequest.objects.filter(status_code=429).exists()


def test_the_window_turns_and_zero_means_unlimited(db, erp):
    partner, _ = erp
    partner.code, partner.rate_limit_per_minute = f"rl-{uuid.uuid4().hex[:8]}", 1
    assert ratelimit.hit(partner, now=1_800_000_000.0) == (True, 60)
    assert ratelimit.hit(partner, now=1_800_000_030.0) == (False, 30)
    assert ratelimit.hit(partner, now=1_800_000_060.0) == (True, 60)
    partner.rate_limit_per_minute = 0
    assert all(ratelimit.hit(partner)[0] for _ in range(5))


# --- credentials, schema and bench-only routes ----------------------------------------------


def test_partner_token_command_prints_a_working_token_once_and_rotates(network, erp, api_client):
    from io import StringIO

    from django.core.management import call_command

    first, second = StringIO(), StringIO()
    call_command("partner_token", "erp-a", stdout=first, stderr=StringIO())
    call_command("partner_token", "erp-a", stdout=second, stderr=StringIO())
    old, new = first.getvalue().strip(), second.getvalue().strip()

    assert old.startswith("pt_") and new.startswith("pt_") and old != new
    assert api_client(old).get("/api/v1/availability", {"sku": "API-A"}).status_code == 401
    assert api_client(new).get("/api/v1/availability", {"sku": "API-A"}).status_code == 200
    assert not PartnerToken.objects.filter(token_hash=new).exists()  # only the hash is stored
    assert PartnerToken.objects.filter(token_hash=PartnerToken.hash(new)).exists()


def test_partner_token_command_creates_a_partner_only_when_asked(db):
    from io import StringIO

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError):
        call_command("partner_token", "newcomer", stdout=StringIO(), stderr=StringIO())
    call_command("partner_token", "newcomer", "--kind", "wms", "--scope", "events:write", stdout=StringIO())
    assert Partner.objects.get(code="newcomer").scopes == ["events:write"]


def test_the_schema_describes_headers_and_error_responses(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    create = schema["paths"]["/api/v1/orders"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in create["parameters"]}
    assert {"201", "400", "401", "403", "409", "413", "422", "429"} <= set(create["responses"])
    error = create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/Error")
    events = schema["paths"]["/api/v1/events"]["post"]
    assert {"X-Timestamp", "X-Signature"} <= {p["name"] for p in events["parameters"] if p["required"]}
    assert {"200", "202", "401"} <= set(events["responses"])
    assert "partnerToken" in schema["components"]["securitySchemes"]


def test_the_bench_endpoint_is_not_routed_without_bench_endpoints(network, erp, api_client):
    assert api_client(erp[1]).post("/api/v1/bench/reserve", {}).status_code == 404
