"""The partner API, /api/v1/: orders in, order status and availability out, warehouse events in.

Every view authenticates a partner by bearer token, checks its scope and rate limit and
answers refusals in the one error format (``portal.api``). Writes are logged as
``InboundRequest`` rows (partner, payload, status, order) for the message log and the
order timeline; so is every refused request of a known partner except rate-limited ones.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time

from django.db import transaction
from django.http.request import RawPostDataException
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import idempotency, inbound
from integrations.api import serializers as api
from integrations.auth import PartnerScope, PartnerTokenAuthentication, partner_of
from integrations.models import InboundRequest, Partner
from integrations.ratelimit import PartnerRateThrottle
from inventory import selectors as inventory_selectors
from inventory.models import Item, Reservation, Warehouse
from orchestration import services as orchestration
from orchestration.models import Order, Shipment, ShipmentLine
from portal.api import ErrorSerializer
from portal.db import savepoint_if_nested
from portal.domain import DomainError, InvalidInput, NotFound

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
EXTERNAL_REF = re.compile(api.EXTERNAL_REF_PATTERN)
LOGGED_PAYLOAD_BYTES = 64 * 1024


class RequestTooLarge(DomainError):
    status = 413
    code = "too_large"


class BadSignature(DomainError):
    status = 401
    code = "bad_signature"


def errors(*codes: int) -> dict:
    descriptions = {
        400: "The body is not valid JSON (or not storable text)",
        401: "No, unknown or revoked token; or a bad or stale event signature",
        403: "The partner lacks the scope for this call",
        404: "No such order of this partner",
        409: "Conflicts with the current state (already cancelled, duplicate reference, key in progress)",
        413: "The body is larger than the limit",
        415: "Send application/json",
        422: "Invalid values; see error.fields",
        429: "Over the partner's rate limit; see Retry-After",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


class PartnerAPIView(APIView):
    """Bearer-token partner, scope per view, per-partner rate limit, body limit, strict JSON, request log."""

    authentication_classes = [PartnerTokenAuthentication]
    permission_classes = [PartnerScope]
    throttle_classes = [PartnerRateThrottle]
    parser_classes = [api.StrictJSONParser]
    renderer_classes = [JSONRenderer]
    required_scope: str | None = None
    log_success = True

    def initial(self, request, *args, **kwargs):
        self._started = time.monotonic()
        self._order_number = ""
        self._idempotency_key = ""
        limit = api.body_limit()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise RequestTooLarge(f"The body is larger than {limit} bytes.")
        super().initial(request, *args, **kwargs)

    def raw_body(self, request) -> bytes:
        try:
            body = request._request.body
        except RawPostDataException:
            body = b""
        except Exception as error:  # RequestDataTooBig and friends
            raise RequestTooLarge(f"The body is larger than {api.body_limit()} bytes.") from error
        if len(body) > api.body_limit():
            raise RequestTooLarge(f"The body is larger than {api.body_limit()} bytes.")
        return body

    def handle_exception(self, exc):
        from django.core.exceptions import RequestDataTooBig

        if isinstance(exc, RequestDataTooBig):
            exc = RequestTooLarge(f"The body is larger than {api.body_limit()} bytes.")
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        try:
            self._log(request, response)
        except Exception:  # the log must never turn an answer into a failure
            logger.exception("inbound request not logged")
        return response

    def _log(self, request, response) -> None:
        principal = getattr(request, "_user", None)
        partner = getattr(principal, "partner", None)
        refused = response.status_code >= 400
        if partner is None or response.status_code == 429 or not (refused or self.log_success):
            return
        if not refused and request.method == "GET":
            return
        payload = None
        try:
            body = request._request.body
            if body and len(body) <= LOGGED_PAYLOAD_BYTES:
                payload = api.parse_json_body(body)
        except Exception:
            payload = None
        data = storable(getattr(response, "data", None))
        error = data.get("error", {}).get("message", "") if refused and isinstance(data, dict) else ""
        with savepoint_if_nested():
            InboundRequest.objects.create(
                partner=partner,
                method=request.method[:8],
                path=storable(request.path)[:300],
                status_code=response.status_code,
                payload=payload,
                response=data if refused else None,
                error=str(error)[:2000],
                idempotency_key=storable(self._idempotency_key)[:200],
                order_number=self._order_number,
                duration_ms=(time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000,
            )


def storable(value):
    """`value` with NUL and unpaired surrogates replaced, so PostgreSQL text and JSON columns take it."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


# --- the canonical order document --------------------------------------------------------


def order_document(order: Order) -> dict:
    """Status, lines, reservations, shipments and open exceptions of one order (five queries at most).

    Read as flat rows rather than model instances: the document is built once per answer and
    nothing in it is written back, so the rows need no model around them.
    """
    if not (Order.customer.is_cached(order) and Order.warehouse.is_cached(order)):
        order = Order.objects.select_related("customer", "warehouse").get(pk=order.pk)
    lines = list(
        order.lines.order_by("line_no").values(
            "pk",
            "line_no",
            "item__sku",
            "quantity",
            "allocated_quantity",
            "picked_quantity",
            "shipped_quantity",
            "status",
        )
    )
    line_no = {line["pk"]: line["line_no"] for line in lines}
    reservations = (
        Reservation.objects.filter(order_line_id__in=list(line_no))
        .order_by("order_line_id", "pk")
        .values(
            "order_line_id",
            "item__sku",
            "stock_level__location__warehouse__code",
            "stock_level__location__code",
            "stock_level__lot__code",
            "quantity",
            "picked_quantity",
            "status",
        )
    )
    return {
        "number": order.number,
        "external_ref": order.external_ref,
        "source": order.source,
        "status": order.status,
        "customer": order.customer.code,
        "warehouse": order.warehouse.code,
        "priority": order.priority,
        "service_level": order.service_level,
        "requested_ship_date": order.requested_ship_date.isoformat() if order.requested_ship_date else None,
        "ship_to": {
            "name": order.ship_to_name,
            "lines": order.ship_to_lines.splitlines(),
            "city": order.ship_to_city,
            "postal_code": order.ship_to_postal_code,
            "country": order.ship_to_country,
        },
        "hold_reason": order.hold_reason,
        "created_at": order.created_at.isoformat(),
        "lines": [
            {
                "line_no": line["line_no"],
                "sku": line["item__sku"],
                "quantity": line["quantity"],
                "allocated_quantity": line["allocated_quantity"],
                "picked_quantity": line["picked_quantity"],
                "shipped_quantity": line["shipped_quantity"],
                "status": line["status"],
            }
            for line in lines
        ],
        "reservations": [
            {
                "line_no": line_no[r["order_line_id"]],
                "sku": r["item__sku"],
                "warehouse": r["stock_level__location__warehouse__code"],
                "location": r["stock_level__location__code"],
                "lot": r["stock_level__lot__code"],
                "quantity": r["quantity"],
                "picked_quantity": r["picked_quantity"],
                "status": r["status"],
            }
            for r in reservations
        ],
        "shipments": _shipments(order),
        "open_exceptions": _open_exceptions(order),
    }


def _shipments(order: Order) -> list[dict]:
    """The order's shipments with their lines (one query, and a second only when there are shipments)."""
    shipments = list(
        Shipment.objects.filter(order=order)
        .order_by("created_at", "pk")
        .values("pk", "number", "status", "carrier", "tracking_number", "packages", "shipped_at")
    )
    lines: dict[int, list[dict]] = {shipment["pk"]: [] for shipment in shipments}
    if shipments:
        for row in (
            ShipmentLine.objects.filter(shipment_id__in=list(lines))
            .order_by("pk")
            .values("shipment_id", "order_line__line_no", "order_line__item__sku", "quantity")
        ):
            lines[row["shipment_id"]].append(
                {
                    "line_no": row["order_line__line_no"],
                    "sku": row["order_line__item__sku"],
                    "quantity": row["quantity"],
                }
            )
    return [
        {
            "number": s["number"],
            "status": s["status"],
            "carrier": s["carrier"],
            "tracking_number": s["tracking_number"],
            "packages": s["packages"],
            "shipped_at": s["shipped_at"].isoformat() if s["shipped_at"] else None,
            "lines": lines[s["pk"]],
        }
        for s in shipments
    ]


def _open_exceptions(order: Order) -> list[dict]:
    from exceptions.models import Case

    cases = (
        Case.objects.filter(order_number=order.number, status__in=Case.ACTIVE_STATES)
        .order_by("created_at", "pk")
        .values("pk", "type__code", "status", "severity", "queue__code", "summary", "created_at")
    )
    return [
        {
            "case_id": case["pk"],
            "type": case["type__code"],
            "status": case["status"],
            "severity": case["severity"],
            "queue": case["queue__code"],
            "summary": case["summary"],
            "opened_at": case["created_at"].isoformat(),
        }
        for case in cases
    ]


def partner_order(partner: Partner, external_ref: str) -> Order:
    """The partner's own order by its reference; any other partner's order does not exist for it."""
    order = (
        Order.objects.filter(source=partner.code, external_ref=external_ref).first()
        if EXTERNAL_REF.match(external_ref)
        else None
    )
    if order is None:
        raise NotFound(f"No order {external_ref[:64]!r} of partner {partner.code}.")
    return order


# --- views -------------------------------------------------------------------------------

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Makes retries safe: the same key and body return the first response; "
    "another body with the key gets 422; a copy while the first runs gets 409. Kept at least 24 hours.",
)

ORDER_EXAMPLE = OpenApiExample(
    "Three lines",
    request_only=True,
    value={
        "external_ref": "PO-100234",
        "customer": "acme",
        "ship_to": {
            "name": "Acme Retail",
            "lines": ["1 Dock Road"],
            "city": "Leeds",
            "postal_code": "LS1 4AP",
            "country": "GB",
        },
        "requested_ship_date": "2026-12-01",
        "service_level": "standard",
        "priority": 2,
        "lines": [
            {"line_no": 1, "sku": "SKU-0001", "quantity": 4},  # items and customer of the demo data
            {"line_no": 2, "sku": "SKU-0002", "quantity": 1},
            {"line_no": 3, "sku": "SKU-0003", "quantity": 12},
        ],
    },
)


class OrdersView(PartnerAPIView):
    """POST /api/v1/orders: receive an order and allocate it."""

    required_scope = Partner.Scope.ORDERS_WRITE

    @extend_schema(
        operation_id="orders_create",
        summary="Send an order",
        description="Creates the order, validates it, checks credit, reserves stock and releases it when "
        "policy allows. Answers with the order, its status and what each line got allocated.",
        parameters=[IDEMPOTENCY_KEY],
        request=api.OrderCreateSerializer,
        responses={201: api.OrderDocumentSerializer, **errors(400, 401, 403, 409, 413, 415, 422, 429)},
        examples=[ORDER_EXAMPLE],
        tags=["orders"],
    )
    def post(self, request):
        partner = partner_of(request)
        body = self.raw_body(request)
        data = request.data
        claim = idempotency.Claim()
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            self._idempotency_key = key = idempotency.check_key(key)
            request_hash = idempotency.fingerprint(request.method, request.path, body)
            claim = idempotency.idempotency_claim(partner=partner, key=key, request_hash=request_hash)
            if claim.record is None:
                response = Response(claim.replay_body, status=claim.replay_status)
                response["Idempotency-Replayed"] = "true"
                self.log_success = False
                return response
        try:
            serializer = api.OrderCreateSerializer(data=data)
            serializer.is_valid(raise_exception=True)
            with transaction.atomic():
                order = inbound.partner_order_submit(
                    partner=partner, data=serializer.validated_data, actor=request.user.actor
                )
                document = order_document(order)
                if claim.record is not None:
                    idempotency.idempotency_complete(
                        record=claim.record, status_code=201, response=document, order_number=order.number
                    )
        except BaseException:
            if claim.record is not None:
                idempotency.idempotency_release(record=claim.record)
            raise
        self._order_number = order.number
        return Response(document, status=status.HTTP_201_CREATED)


class OrderDetailView(PartnerAPIView):
    """GET /api/v1/orders/{external_ref}: the order in the canonical shape."""

    required_scope = Partner.Scope.ORDERS_READ

    @extend_schema(
        operation_id="orders_retrieve",
        summary="Read an order",
        description="Status, lines, reservations, shipments and open exceptions of one of the partner's orders.",
        responses={200: api.OrderDocumentSerializer, **errors(401, 403, 404, 429)},
        tags=["orders"],
    )
    def get(self, request, external_ref: str):
        order = partner_order(partner_of(request), external_ref)
        return Response(order_document(order))


class OrderCancelView(PartnerAPIView):
    """POST /api/v1/orders/{external_ref}/cancel."""

    required_scope = Partner.Scope.ORDERS_WRITE

    @extend_schema(
        operation_id="orders_cancel",
        summary="Cancel an order",
        description="Cancels an order that has not been packed; its reservations are released. A reason is required.",
        request=api.CancelSerializer,
        responses={200: api.OrderDocumentSerializer, **errors(400, 401, 403, 404, 409, 413, 415, 422, 429)},
        tags=["orders"],
    )
    def post(self, request, external_ref: str):
        partner = partner_of(request)
        order = partner_order(partner, external_ref)
        self._order_number = order.number
        self.raw_body(request)  # the body limit holds without a Content-Length too
        serializer = api.CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            order = orchestration.order_cancel(
                order=order, actor=request.user.actor, reason=serializer.validated_data["reason"]
            )
            document = order_document(order)
        return Response(document)


class AvailabilityView(PartnerAPIView):
    """GET /api/v1/availability?sku=…[&warehouse=…]."""

    required_scope = Partner.Scope.AVAILABILITY_READ

    @extend_schema(
        operation_id="availability_retrieve",
        summary="Available to promise",
        description="On hand, reserved, quarantined and available per warehouse (pick and reserve locations).",
        parameters=[api.AvailabilityQuerySerializer],  # the limits it checks are the schema's
        responses={200: api.AvailabilitySerializer, **errors(401, 403, 422, 429)},
        tags=["availability"],
    )
    def get(self, request):
        query = api.AvailabilityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        sku, warehouse_code = query.validated_data["sku"], query.validated_data.get("warehouse")
        item = Item.objects.filter(sku=sku).first()
        if item is None:
            raise InvalidInput(f"Unknown SKU {sku!r}.", fields={"sku": ["Unknown SKU."]})
        warehouse = None
        if warehouse_code:
            warehouse = Warehouse.objects.filter(code=warehouse_code).first()
            if warehouse is None:
                raise InvalidInput(
                    f"Unknown warehouse {warehouse_code!r}.", fields={"warehouse": ["Unknown warehouse."]}
                )
        rows = inventory_selectors.availability(item=item, warehouse=warehouse)
        return Response(
            {
                "sku": item.sku,
                "available": sum(row["available"] for row in rows),
                "warehouses": [
                    {
                        "warehouse": row["warehouse_code"],
                        "on_hand": row["on_hand"],
                        "reserved": row["reserved"],
                        "quarantined": row["quarantined"],
                        "available": row["available"],
                    }
                    for row in rows
                ],
            }
        )


def verify_signature(partner: Partner, request, body: bytes, *, now: float | None = None) -> None:
    """X-Timestamp within five minutes of now, and X-Signature = sha256=HMAC(secret, "<timestamp>.<body>")."""
    timestamp = request.headers.get("X-Timestamp", "")
    signature = request.headers.get("X-Signature", "")
    if not partner.webhook_secret:
        raise BadSignature(f"Partner {partner.code} has no signing secret configured; events cannot be verified.")
    if not timestamp or not signature:
        raise BadSignature("Sign events: X-Timestamp and X-Signature headers are required.")
    if not re.fullmatch(r"\d{1,12}", timestamp):
        raise BadSignature("X-Timestamp must be Unix time in whole seconds.", code="stale_timestamp")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        raise BadSignature(
            "X-Timestamp is more than five minutes from the portal's clock; sign the event again.",
            code="stale_timestamp",
        )
    expected = hmac.new(partner.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    scheme, _, given = signature.partition("=")
    if scheme != "sha256" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadSignature("X-Signature does not match the body; sign '<X-Timestamp>.<raw body>' with HMAC-SHA256.")


SIGNATURE_HEADERS = [
    OpenApiParameter("X-Timestamp", str, OpenApiParameter.HEADER, required=True),
    OpenApiParameter("X-Signature", str, OpenApiParameter.HEADER, required=True),
]


class EventsView(PartnerAPIView):
    """POST /api/v1/events: a signed partner event, stored and processed by a worker."""

    required_scope = Partner.Scope.EVENTS_WRITE
    log_success = False

    @extend_schema(
        operation_id="events_create",
        summary="Send a partner event",
        description=(
            "Signed: `X-Timestamp` (Unix seconds, within 5 minutes) and "
            '`X-Signature: sha256=<hex HMAC-SHA256 of "<X-Timestamp>.<raw body>" with the partner\'s webhook '
            "secret>`. Accepted events are stored and processed by a worker in order per subject (202); a "
            "repeated `event_id` is acknowledged (200, `duplicate`) and not processed again.\n\n"
            "Types and payloads:\n\n" + (inbound.__doc__ or "").split("Event types handled here", 1)[-1]
        ),
        parameters=SIGNATURE_HEADERS,
        request=api.EventSerializer,
        responses={
            202: OpenApiResponse(api.EventAcceptedSerializer, description="Stored; a worker processes it"),
            200: OpenApiResponse(api.EventAcceptedSerializer, description="Already received; ignored"),
            **errors(400, 401, 403, 413, 415, 422, 429),
        },
        tags=["events"],
    )
    def post(self, request):
        partner = partner_of(request)
        body = self.raw_body(request)
        verify_signature(partner, request, body)
        serializer = api.EventSerializer(data=api.parse_json_body(body))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        accepted = inbound.event_accept(
            partner=partner,
            event_id=data["event_id"],
            event_type=data["type"],
            occurred_at=data["occurred_at"],
            payload=data["payload"],
        )
        self._order_number = accepted.event.order_number
        return Response(
            _event_answer(accepted), status=status.HTTP_200_OK if accepted.duplicate else status.HTTP_202_ACCEPTED
        )


def _event_answer(accepted: inbound.Accepted) -> dict:
    """What a partner is told about one event it sent: stored now, or already received."""
    return {
        "status": "duplicate" if accepted.duplicate else "accepted",
        "event_id": accepted.event.event_id,
        "event_status": accepted.event.status,
    }


class EventBatchView(PartnerAPIView):
    """POST /api/v1/events/batch: up to 500 signed warehouse events in one request, stored together."""

    required_scope = Partner.Scope.EVENTS_WRITE
    log_success = False

    @extend_schema(
        operation_id="events_batch_create",
        summary="Send a batch of warehouse events",
        description=(
            'Body `{"events": [event, …]}`: 1 to 500 events, each as for `POST /api/v1/events`, signed '
            "the same way over the whole raw body. The batch is stored in one transaction or refused "
            "whole (422, with fields named `events.<index>.…`); events received before, or twice in the "
            "batch, are answered `duplicate` and not stored again. Workers process the events in order "
            "per subject, in the order of the batch. For systems that report in bursts (sorters, "
            "scanners): one request instead of hundreds."
        ),
        parameters=SIGNATURE_HEADERS,
        request=api.EventBatchSerializer,
        responses={
            202: OpenApiResponse(api.EventBatchAcceptedSerializer, description="Stored; workers process them"),
            **errors(400, 401, 403, 413, 415, 422, 429),
        },
        tags=["events"],
    )
    def post(self, request):
        partner = partner_of(request)
        body = self.raw_body(request)
        verify_signature(partner, request, body)
        serializer = api.EventBatchSerializer(data=api.parse_json_body(body))
        serializer.is_valid(raise_exception=True)
        events = [
            {
                "event_id": item["event_id"],
                "type": item["type"],
                "occurred_at": item["occurred_at"],
                "payload": item["payload"],
            }
            for item in serializer.validated_data["events"]
        ]
        accepted = inbound.events_accept_many(partner=partner, events=events)
        answers = [_event_answer(item) for item in accepted]
        duplicates = sum(1 for item in accepted if item.duplicate)
        return Response(
            {"accepted": len(accepted) - duplicates, "duplicates": duplicates, "events": answers},
            status=status.HTTP_202_ACCEPTED,
        )
