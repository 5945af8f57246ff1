"""Operations admin for inventory: reference data and policies editable; quantities read-only (the ledger moves them)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F
from django.utils.html import format_html

from inventory import services
from inventory.admin_actions import ReadOnlyAdmin, ReadOnlyInline, ServiceAction, ServiceActionsAdmin
from inventory.models import (
    CarrierCutoff,
    CycleCount,
    Item,
    ItemSubstitute,
    Location,
    Lot,
    Receipt,
    ReceiptLine,
    Reservation,
    StockLevel,
    StockMovement,
    VariancePolicy,
    Warehouse,
)


class CarrierCutoffInline(admin.TabularInline):
    model = CarrierCutoff
    extra = 0


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "time_zone", "default_cutoff_time", "is_active"]
    list_filter = ["is_active", "time_zone"]
    search_fields = ["code", "name"]
    inlines = [CarrierCutoffInline]


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["code", "warehouse", "zone", "kind", "pick_sequence", "is_active"]
    list_filter = ["warehouse", "kind", "zone", "is_active"]
    search_fields = ["code", "zone"]
    list_select_related = ["warehouse"]


class SubstituteInline(admin.TabularInline):
    model = ItemSubstitute
    fk_name = "item"
    extra = 0
    autocomplete_fields = ["substitute"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["sku", "description", "unit_of_measure", "lot_tracked", "unit_value", "is_active"]
    list_filter = ["is_active", "lot_tracked", "unit_of_measure"]
    search_fields = ["sku", "description"]
    inlines = [SubstituteInline]


@admin.register(Lot)
class LotAdmin(admin.ModelAdmin):
    list_display = ["code", "item", "expires_on"]
    list_filter = ["expires_on"]
    search_fields = ["code", "item__sku"]
    list_select_related = ["item"]
    autocomplete_fields = ["item"]


class ActiveReservationInline(ReadOnlyInline):
    model = Reservation
    fields = ["order_number", "order_line_id", "quantity", "status", "created_at", "expires_at"]
    readonly_fields = fields
    verbose_name_plural = "active reservations"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=Reservation.Status.RESERVED)


class MovementInline(ReadOnlyInline):
    model = StockMovement
    fields = [
        "created_at",
        "kind",
        "on_hand_delta",
        "quarantined_delta",
        "actor",
        "reason",
        "source_type",
        "source_ref",
    ]
    readonly_fields = fields
    verbose_name_plural = "ledger (latest first)"
    show_change_link = False


@admin.register(StockLevel)
class StockLevelAdmin(ServiceActionsAdmin):
    """Quantities are read-only here: receipts, picks, adjustments and counts change them through the ledger."""

    read_only = True
    list_display = ["item", "warehouse", "location", "lot", "on_hand", "reserved", "quarantined", "available_now"]
    list_filter = ["location__warehouse", "location__kind", "location__zone"]
    search_fields = ["item__sku", "item__description", "location__code", "lot__code"]
    list_select_related = ["item", "location__warehouse", "lot"]
    readonly_fields = ["item", "location", "lot", "on_hand", "reserved", "quarantined", "available_now", "updated_at"]
    inlines = [ActiveReservationInline, MovementInline]
    service_actions = [
        ServiceAction(
            "request_count",
            "Request a cycle count",
            lambda level, actor, reason: services.count_request(stock_level=level, actor=actor, reason=reason),
            permission="view",
        ),
    ]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(available_quantity=F("on_hand") - F("reserved") - F("quarantined"))
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="warehouse", ordering="location__warehouse__code")
    def warehouse(self, obj):
        return obj.location.warehouse.code

    @admin.display(description="available", ordering="available_quantity")
    def available_now(self, obj):
        value = getattr(obj, "available_quantity", obj.available)
        return format_html('<strong style="color:{}">{}</strong>', "#c0392b" if value <= 0 else "inherit", value)


def _release(reservation, actor, reason):
    released = services.reservation_release(reservations=[reservation], actor=actor, reason=reason)
    if not released:
        from portal.domain import TransitionRefused

        raise TransitionRefused(
            f"Reservation {reservation.pk} is {reservation.status}; only reserved stock is released."
        )


@admin.register(Reservation)
class ReservationAdmin(ServiceActionsAdmin):
    read_only = True
    list_display = [
        "id",
        "order_number",
        "order_line_id",
        "item",
        "warehouse",
        "stock_level",
        "quantity",
        "status",
        "created_at",
    ]
    list_filter = ["status", "warehouse", "created_at"]
    search_fields = ["order_number", "item__sku"]
    list_select_related = ["item", "warehouse", "stock_level__location"]
    readonly_fields = [f.name for f in Reservation._meta.fields]
    service_actions = [
        ServiceAction(
            "release_reservation", "Release (give the stock back)", _release, applies=lambda r: r.status == "reserved"
        )
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "kind",
        "stock_level",
        "on_hand_delta",
        "quarantined_delta",
        "actor",
        "source_type",
        "source_ref",
    ]
    list_filter = ["kind", "source_type", "stock_level__location__warehouse", "created_at"]
    search_fields = ["stock_level__item__sku", "reason", "actor", "source_ref"]
    list_select_related = ["stock_level__item", "stock_level__location"]
    date_hierarchy = "created_at"


@admin.register(VariancePolicy)
class VariancePolicyAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "receiving_tolerance_percent",
        "receiving_tolerance_units",
        "count_tolerance_percent",
        "count_tolerance_units",
    ]


class ReceiptLineInline(admin.TabularInline):
    model = ReceiptLine
    extra = 0
    fields = ["line_no", "item", "lot", "expected_quantity", "received_quantity", "variance", "variance_accepted"]
    readonly_fields = ["received_quantity", "variance", "variance_accepted"]
    autocomplete_fields = ["item"]

    @admin.display(description="variance")
    def variance(self, line):
        return line.variance if line.pk else ""


@admin.register(Receipt)
class ReceiptAdmin(ServiceActionsAdmin):
    list_display = ["number", "document_kind", "supplier", "warehouse", "status", "invoice_on_hold", "created_at"]
    list_filter = ["status", "warehouse", "document_kind", "invoice_on_hold"]
    search_fields = ["number", "purchase_order", "supplier"]
    readonly_fields = ["status", "closed_at", "invoice_on_hold"]
    inlines = [ReceiptLineInline]
    service_actions = [
        ServiceAction(
            "close_receipt",
            "Close (flag variances)",
            lambda r, actor, reason: services.receipt_close(receipt=r, actor=actor, reason=reason),
            applies=lambda r: r.status in ("expected", "receiving"),
        ),
        ServiceAction(
            "accept_variance",
            "Accept variance (release invoice)",
            lambda r, actor, reason: services.receipt_accept_variance(receipt=r, actor=actor, reason=reason),
            applies=lambda r: r.invoice_on_hold,
        ),
        ServiceAction(
            "dispute_receipt",
            "Dispute with supplier",
            lambda r, actor, reason: services.receipt_dispute(receipt=r, actor=actor, reason=reason),
            applies=lambda r: r.status == "closed",
        ),
        ServiceAction(
            "cancel_receipt",
            "Cancel",
            lambda r, actor, reason: services.receipt_cancel(receipt=r, actor=actor, reason=reason),
            applies=lambda r: r.status == "expected",
        ),
    ]


@admin.register(CycleCount)
class CycleCountAdmin(ServiceActionsAdmin):
    read_only = True
    list_display = [
        "id",
        "stock_level",
        "status",
        "expected_quantity",
        "counted_quantity",
        "variance",
        "counted_by_actor",
        "decided_by_actor",
    ]
    list_filter = ["status", "stock_level__location__warehouse"]
    search_fields = ["stock_level__item__sku", "stock_level__location__code", "counted_by_actor"]
    list_select_related = ["stock_level__item", "stock_level__location"]
    readonly_fields = [f.name for f in CycleCount._meta.fields] + ["variance"]
    service_actions = [
        ServiceAction(
            "approve_count",
            "Approve (apply to on hand)",
            lambda c, actor, reason: services.count_approve(count=c, actor=actor, reason=reason),
            applies=lambda c: c.status == "counted",
        ),
        ServiceAction(
            "reject_count",
            "Reject (recount)",
            lambda c, actor, reason: services.count_reject(count=c, actor=actor, reason=reason),
            applies=lambda c: c.status in ("open", "counted"),
        ),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
