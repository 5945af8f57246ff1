"""Shapes of the partner API: what partners send (validated at the edge) and the canonical documents they get."""

from __future__ import annotations

import json
import math

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from integrations.inbound import event_types
from inventory.models import Item
from orchestration.models import Customer, Order

MAX_ORDER_LINES = 200
MAX_JSON_DEPTH = 32
EXTERNAL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@#+-]{0,63}$"
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"


# --- parsing ---------------------------------------------------------------------------


def check_json_value(value, depth: int = 0) -> None:
    """Refuse what PostgreSQL or the JSON column cannot store: NUL, unpaired surrogates, Infinity/NaN, deep nesting."""
    if depth > MAX_JSON_DEPTH:
        raise ParseError(f"JSON is nested more than {MAX_JSON_DEPTH} levels deep.")
    if isinstance(value, str):
        if "\x00" in value:
            raise ParseError("Text may not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ParseError("Text contains an unpaired surrogate character.") from error
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ParseError("Numbers must be finite.")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_value(key, depth + 1)
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json_body(raw: bytes):
    """Parse a request body strictly (UTF-8, no NaN/Infinity) and check it can be stored."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise ParseError(f"The body is not valid JSON: {str(error)[:200]}") from error
    check_json_value(value)
    return value


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, plus: bounded depth, finite numbers, text PostgreSQL can store — else 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        return parse_json_body(raw)


# --- orders in -------------------------------------------------------------------------


class ShipToSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=160)
    lines = serializers.ListField(child=serializers.CharField(max_length=120), min_length=1, max_length=4)
    city = serializers.CharField(max_length=80)
    postal_code = serializers.CharField(max_length=20)
    country = serializers.RegexField(r"^[A-Za-z]{2}$", help_text="ISO 3166-1 alpha-2")


class OrderLineInSerializer(serializers.Serializer):
    line_no = serializers.IntegerField(min_value=1, max_value=9999)
    sku = serializers.CharField(max_length=40)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)


class OrderCreateSerializer(serializers.Serializer):
    """A new order from an ERP or storefront. Customer and SKUs must be known; line numbers unique."""

    external_ref = serializers.RegexField(
        EXTERNAL_REF_PATTERN, max_length=64, help_text="The partner's order reference, unique per partner"
    )
    customer = serializers.CharField(max_length=32, help_text="Customer code")
    ship_to = ShipToSerializer()
    requested_ship_date = serializers.DateField(required=False, allow_null=True)
    service_level = serializers.RegexField(CODE_PATTERN, max_length=40, required=False, default="standard")
    priority = serializers.IntegerField(
        min_value=1, max_value=4, required=False, default=2, help_text="1 low … 4 urgent"
    )
    lines = OrderLineInSerializer(many=True, min_length=1, max_length=MAX_ORDER_LINES)

    def validate_customer(self, code: str) -> Customer:
        customer = Customer.objects.select_related("default_warehouse").filter(code=code).first()
        if customer is None:
            raise serializers.ValidationError(f"Unknown customer {code!r}.")
        return customer

    def validate_lines(self, lines: list[dict]) -> list[dict]:
        """Line numbers unique, SKUs known and sold; each line carries its item on (read once, for the order too)."""
        errors: list[dict] = [{} for _ in lines]
        seen: set[int] = set()
        skus = {line["sku"] for line in lines}
        items = {item.sku: item for item in Item.objects.filter(sku__in=skus, is_active=True)}
        for index, line in enumerate(lines):
            if line["line_no"] in seen:
                errors[index]["line_no"] = [f"Line number {line['line_no']} is used twice."]
            seen.add(line["line_no"])
            if line["sku"] not in items:
                errors[index]["sku"] = [f"Unknown or inactive SKU {line['sku']!r}."]
            else:
                line["item"] = items[line["sku"]]
        if any(errors):
            raise serializers.ValidationError(errors)
        return lines


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="Why the order is cancelled, for the record")


class AvailabilityQuerySerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=40)
    warehouse = serializers.CharField(max_length=16, required=False, help_text="One warehouse code")


class EventSerializer(serializers.Serializer):
    """A partner event (warehouse, carrier or ERP). Sign `<X-Timestamp>.<raw body>` with HMAC-SHA256 and the partner's webhook secret."""

    event_id = serializers.CharField(max_length=100, help_text="Unique per partner; a repeat is acknowledged only")
    type = serializers.ChoiceField(choices=event_types(), help_text="What happened; the payload depends on it")
    occurred_at = serializers.DateTimeField()
    payload = serializers.DictField(help_text="Depends on the type; see the event types in the description")


class EventAcceptedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["accepted", "duplicate"])
    event_id = serializers.CharField()
    event_status = serializers.CharField(help_text="pending, processed, failed or ignored")


EVENT_BATCH_MAX = 500


class EventBatchSerializer(serializers.Serializer):
    """Up to 500 events in one signed request, stored together or not at all."""

    events = serializers.ListField(child=EventSerializer(), min_length=1, max_length=EVENT_BATCH_MAX)


class EventBatchAcceptedSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events stored by this request")
    duplicates = serializers.IntegerField(help_text="Events received before (or twice in this batch); ignored")
    events = EventAcceptedSerializer(many=True, help_text="One answer per event, in the order sent")


# --- documents out ---------------------------------------------------------------------


class OrderLineOutSerializer(serializers.Serializer):
    line_no = serializers.IntegerField()
    sku = serializers.CharField()
    quantity = serializers.IntegerField()
    allocated_quantity = serializers.IntegerField()
    picked_quantity = serializers.IntegerField()
    shipped_quantity = serializers.IntegerField()
    status = serializers.CharField()


class ReservationOutSerializer(serializers.Serializer):
    line_no = serializers.IntegerField()
    sku = serializers.CharField()
    warehouse = serializers.CharField()
    location = serializers.CharField()
    lot = serializers.CharField(allow_null=True)
    quantity = serializers.IntegerField()
    picked_quantity = serializers.IntegerField()
    status = serializers.CharField()


class ShipmentLineOutSerializer(serializers.Serializer):
    line_no = serializers.IntegerField()
    sku = serializers.CharField()
    quantity = serializers.IntegerField()


class ShipmentOutSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.CharField()
    carrier = serializers.CharField()
    tracking_number = serializers.CharField()
    packages = serializers.IntegerField()
    shipped_at = serializers.DateTimeField(allow_null=True)
    lines = ShipmentLineOutSerializer(many=True)


class OpenExceptionSerializer(serializers.Serializer):
    case_id = serializers.IntegerField()
    type = serializers.CharField()
    status = serializers.CharField()
    severity = serializers.CharField()
    queue = serializers.CharField()
    summary = serializers.CharField()
    opened_at = serializers.DateTimeField()


class ShipToOutSerializer(serializers.Serializer):
    name = serializers.CharField()
    lines = serializers.ListField(child=serializers.CharField())
    city = serializers.CharField()
    postal_code = serializers.CharField()
    country = serializers.CharField()


class OrderDocumentSerializer(serializers.Serializer):
    """An order in the canonical shape: status, lines, reservations, shipments and open exceptions."""

    number = serializers.CharField(help_text="The portal's order number")
    external_ref = serializers.CharField()
    source = serializers.CharField()
    status = serializers.ChoiceField(choices=Order.Status.choices)
    customer = serializers.CharField()
    warehouse = serializers.CharField()
    priority = serializers.IntegerField()
    service_level = serializers.CharField()
    requested_ship_date = serializers.DateField(allow_null=True)
    ship_to = ShipToOutSerializer()
    hold_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    lines = OrderLineOutSerializer(many=True)
    reservations = ReservationOutSerializer(many=True)
    shipments = ShipmentOutSerializer(many=True)
    open_exceptions = OpenExceptionSerializer(many=True)


class WarehouseAvailabilitySerializer(serializers.Serializer):
    warehouse = serializers.CharField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    quarantined = serializers.IntegerField()
    available = serializers.IntegerField()


class AvailabilitySerializer(serializers.Serializer):
    sku = serializers.CharField()
    available = serializers.IntegerField(help_text="Across the warehouses listed")
    warehouses = WarehouseAvailabilitySerializer(many=True)


def body_limit() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 1024 * 1024)
