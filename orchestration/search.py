"""The top bar's search, for orders (by number or the partner's reference), shipments and customers."""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse

from orchestration.models import Customer, Order, Shipment
from orchestration.selectors import CREDIT_ROLES, ORDER_ROLES
from portal.roles import allowed
from portal.search import HITS_PER_SOURCE, Hit

SHIPMENT_ROLES = ORDER_ROLES  # shipments show on their order's page


def find(term: str, user) -> list[Hit]:
    hits: list[Hit] = []
    if allowed(user, *ORDER_ROLES):
        orders = (
            Order.objects.filter(Q(number=term.upper()) | Q(external_ref=term))
            .select_related("customer")
            .order_by("-created_at")[:HITS_PER_SOURCE]
        )
        hits += [
            Hit(
                "Order",
                order.number,
                reverse("orchestration:order-detail", args=[order.number]),
                f"{order.external_ref} · {order.customer.name} · {order.get_status_display()}",
                exact=True,
            )
            for order in orders
        ]
        shipment = Shipment.objects.filter(number=term.upper()).select_related("order").first()
        if shipment is not None:
            hits.append(
                Hit(
                    "Shipment",
                    shipment.number,
                    reverse("orchestration:order-detail", args=[shipment.order.number]),
                    f"order {shipment.order.number} · {shipment.get_status_display()}",
                    exact=True,
                )
            )
    if allowed(user, *CREDIT_ROLES):
        customers = Customer.objects.filter(Q(code__iexact=term) | Q(name__istartswith=term)).order_by("code")
        hits += [
            Hit(
                "Customer",
                customer.name,
                reverse("orchestration:customer-detail", args=[customer.code]),
                f"{customer.code} · credit {customer.get_credit_status_display().lower()}",
                exact=customer.code.lower() == term.lower(),
            )
            for customer in customers[:HITS_PER_SOURCE]
        ]
    return hits
