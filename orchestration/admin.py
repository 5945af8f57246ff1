"""Operations admin for orders: customers and release policy editable; orders, tasks and shipments change only
through their services (admin actions and buttons asking for a reason)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from inventory.admin_actions import ReadOnlyInline, ServiceAction, ServiceActionsAdmin
from inventory.models import Reservation
from orchestration import services
from orchestration.models import Customer, Order, OrderLine, ReleasePolicy, Shipment, ShipmentLine, Task
from portal.domain import InvalidInput

S = Order.Status


@admin.register(Customer)
class CustomerAdmin(ServiceActionsAdmin):
    list_display = [
        "code",
        "name",
        "credit_status",
        "credit_limit",
        "open_balance",
        "service_tier",
        "allows_split_shipment",
        "allows_substitution",
    ]
    list_filter = ["credit_status", "service_tier", "allows_split_shipment", "allows_substitution", "default_warehouse"]
    search_fields = ["code", "name"]


@admin.register(ReleasePolicy)
class ReleasePolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "warehouse",
        "auto_release",
        "require_credit_ok",
        "allow_partial_release",
        "ship_window_days",
        "cutoff_buffer_minutes",
        "credit_hold_over_limit",
        "release_credit_holds_when_clear",
    ]
    list_filter = ["auto_release", "allow_partial_release"]


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = [
        "line_no",
        "item",
        "quantity",
        "allocated_quantity",
        "picked_quantity",
        "shipped_quantity",
        "unit_price",
        "status",
        "substitute_for",
    ]
    readonly_fields = fields
    show_change_link = False


class OrderTaskInline(ReadOnlyInline):
    model = Task
    fk_name = "order"
    fields = ["kind", "status", "location", "item", "quantity", "done_quantity", "performer", "equipment_code"]
    readonly_fields = fields


def _order_action(name, label, call, sources):
    return ServiceAction(name, label, call, applies=lambda order: order.status in sources)


def _release_credit_hold(order, actor, reason):
    return services.order_release_credit_hold(order=order, actor=actor, reason=reason)


@admin.register(Order)
class OrderAdmin(ServiceActionsAdmin):
    read_only = True
    list_display = [
        "number",
        "external_ref",
        "customer",
        "warehouse",
        "status",
        "priority",
        "requested_ship_date",
        "total_value",
        "created_at",
    ]
    list_filter = ["status", "warehouse", "priority", "source", "requested_ship_date", "customer__service_tier"]
    search_fields = ["number", "external_ref", "customer__code", "customer__name"]
    list_select_related = ["customer", "warehouse"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields] + ["reservations"]
    inlines = [OrderLineInline, OrderTaskInline]
    service_actions = [
        _order_action(
            "allocate",
            "Allocate",
            lambda o, a, r: services.order_allocate(order=o, actor=a, reason=r),
            [S.VALIDATED, *Order.ALLOCATION_STATES],
        ),
        _order_action(
            "release",
            "Release to warehouse",
            lambda o, a, r: services.order_release(order=o, actor=a, reason=r),
            [S.ALLOCATED, S.PARTIALLY_ALLOCATED],
        ),
        _order_action(
            "hold", "Put on hold", lambda o, a, r: services.order_hold(order=o, actor=a, reason=r), Order.HOLDABLE
        ),
        _order_action(
            "unhold", "Release hold", lambda o, a, r: services.order_unhold(order=o, actor=a, reason=r), [S.ON_HOLD]
        ),
        _order_action("release_credit_hold", "Release credit hold", _release_credit_hold, [S.CREDIT_HOLD]),
        _order_action(
            "cancel_order",
            "Cancel",
            lambda o, a, r: services.order_cancel(order=o, actor=a, reason=r),
            Order.CANCELLABLE,
        ),
        _order_action(
            "invoice", "Mark invoiced", lambda o, a, r: services.order_invoice(order=o, actor=a, reason=r), [S.SHIPPED]
        ),
        _order_action(
            "close_order", "Close", lambda o, a, r: services.order_close(order=o, actor=a, reason=r), [S.INVOICED]
        ),
    ]

    def has_add_permission(self, request):
        return False  # orders arrive from partners and the portal through order_create

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="reservations")
    def reservations(self, order):
        rows = (
            Reservation.objects.filter(order_number=order.number).select_related("stock_level__location").order_by("pk")
        )
        return format_html(
            "<table><tr><th>id</th><th>line id</th><th>location</th><th>qty</th><th>status</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (r.pk, r.order_line_id, r.stock_level.location.code, r.quantity, r.get_status_display())
                    for r in rows
                ),
            )
            or "",
        )


def _task_action(name, label, service, sources):
    return ServiceAction(
        name, label, lambda t, a, r: service(task=t, actor=a, reason=r), applies=lambda t: t.status in sources
    )


@admin.register(Task)
class TaskAdmin(ServiceActionsAdmin):
    read_only = True
    list_display = [
        "id",
        "kind",
        "status",
        "warehouse",
        "zone",
        "location",
        "item",
        "quantity",
        "done_quantity",
        "performer",
        "equipment_code",
        "order",
    ]
    list_filter = ["status", "kind", "performer", "warehouse", "zone"]
    search_fields = ["order__number", "item__sku", "equipment_code", "location__code"]
    list_select_related = ["warehouse", "location", "item", "order"]
    readonly_fields = [f.name for f in Task._meta.fields]
    service_actions = [
        _task_action("dispatch_task", "Dispatch to a person", services.task_dispatch, [Task.Status.CREATED]),
        _task_action(
            "fall_back",
            "Fall back to manual",
            services.task_fall_back_to_manual,
            [Task.Status.DISPATCHED, Task.Status.ACKNOWLEDGED],
        ),
        _task_action("fail_task", "Mark failed", services.task_fail, Task.OPEN_STATES),
        _task_action("retry_task", "Retry (new task)", services.task_retry, [Task.Status.FAILED]),
        _task_action("cancel_task", "Cancel", services.task_cancel, Task.OPEN_STATES),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ShipmentLineInline(ReadOnlyInline):
    model = ShipmentLine
    fields = ["order_line", "quantity"]
    readonly_fields = fields
    show_change_link = False


def _confirm(shipment, actor, reason):
    if not reason:
        raise InvalidInput("A reason is required.")
    return services.shipment_confirm(shipment=shipment, actor=actor, reason=reason)


@admin.register(Shipment)
class ShipmentAdmin(ServiceActionsAdmin):
    read_only = True
    list_display = [
        "number",
        "order",
        "warehouse",
        "status",
        "carrier",
        "service_level",
        "tracking_number",
        "shipped_at",
    ]
    list_filter = ["status", "warehouse", "carrier"]
    search_fields = ["number", "order__number", "tracking_number"]
    list_select_related = ["order", "warehouse"]
    readonly_fields = [f.name for f in Shipment._meta.fields]
    inlines = [ShipmentLineInline]
    service_actions = [
        ServiceAction(
            "confirm_delivery", "Confirm delivery", _confirm, applies=lambda s: s.status == Shipment.Status.SHIPPED
        )
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
