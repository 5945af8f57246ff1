"""The portal's navigation, filtered by the signed-in user's roles."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from portal.roles import Role, roles_of


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[Role] | None = None  # None: everyone signed in
    staff_only: bool = False


ALL_QUEUE_ROLES = frozenset(Role) - {Role.OPERATIONS_ADMIN}

NAV_ITEMS: list[NavItem] = [
    NavItem("Home", "home"),
    NavItem("Queues", "exceptions:queue-list", ALL_QUEUE_ROLES),
    NavItem(
        "Orders",
        "orchestration:order-list",
        frozenset(
            {
                Role.CUSTOMER_SERVICE,
                Role.WAREHOUSE_SUPERVISOR,
                Role.FINANCE,
                Role.TRANSPORTATION,
                Role.OPERATIONS_ADMIN,
            }
        ),
    ),
    NavItem(
        "Customers",
        "orchestration:customer-list",
        frozenset({Role.FINANCE, Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN}),
    ),
    NavItem(
        "Shipments",
        "orchestration:shipment-list",
        frozenset({Role.TRANSPORTATION, Role.WAREHOUSE_SUPERVISOR, Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN}),
    ),
    NavItem(
        "Stock",
        "inventory:stock-list",
        frozenset(
            {
                Role.WAREHOUSE_SUPERVISOR,
                Role.PROCUREMENT,
                Role.CUSTOMER_SERVICE,
                Role.OPERATIONS_ADMIN,
            }
        ),
    ),
    NavItem(
        "Receipts",
        "inventory:receipt-list",
        frozenset({Role.PROCUREMENT, Role.WAREHOUSE_SUPERVISOR, Role.FINANCE, Role.OPERATIONS_ADMIN}),
    ),
    NavItem("Tasks", "task-list", frozenset({Role.WAREHOUSE_SUPERVISOR, Role.OPERATIONS_ADMIN})),
    NavItem("Equipment", "automation:equipment-board", frozenset({Role.WAREHOUSE_SUPERVISOR, Role.OPERATIONS_ADMIN})),
    NavItem("Integrations", "integrations:monitor", frozenset({Role.IT_SUPPORT, Role.OPERATIONS_ADMIN})),
    NavItem("Admin", "admin:index", staff_only=True),
]


def items_for(user) -> list[dict]:
    roles = roles_of(user)
    items = []
    for item in NAV_ITEMS:
        if item.staff_only and not user.is_staff:
            continue
        if item.roles is not None and not (roles & item.roles) and not user.is_superuser:
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue  # the page is not installed yet
        items.append({"label": item.label, "url": url, "name": item.url_name})
    return items
