"""Panels on a role's home page. Apps register the panels they own in AppConfig.ready()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.shortcuts import render

from portal.roles import Role, require_role, roles_of


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    template: str
    roles: frozenset[Role]
    context: Callable  # (request) -> dict
    order: int = 100
    wide: bool = False  # takes two columns of the page where there is room


_panels: dict[str, Panel] = {}

ROLE_FOCUS = {
    Role.WAREHOUSE_SUPERVISOR: "Short picks, damaged stock, automation faults and count variances in your zones.",
    Role.CUSTOMER_SERVICE: "Partial shipments, substitutions, address problems and where each order stands.",
    Role.FINANCE: "Credit holds and invoice holds after receiving variances.",
    Role.PROCUREMENT: "Receiving variances against ASN and PO, supplier disputes.",
    Role.TRANSPORTATION: "Carrier cutoff misses and shipment exceptions.",
    Role.IT_SUPPORT: "Integration failures, dead letters, replay and partner health.",
    Role.OPERATIONS_ADMIN: "Rules, SLA policies, routing, partners and equipment in the admin.",
}


def home_panel(*, key: str, title: str, template: str, roles, order: int = 100, wide: bool = False):
    """Register `context(request) -> dict` as a home page panel for `roles`."""

    def register(context: Callable):
        _panels[key] = Panel(key, title, template, frozenset(roles), context, order, wide)
        return context

    return register


def panels_for(request) -> list[dict]:
    roles = roles_of(request.user)
    chosen = sorted((p for p in _panels.values() if p.roles & roles), key=lambda p: (p.order, p.key))
    return [
        {"key": p.key, "title": p.title, "template": p.template, "wide": p.wide, **p.context(request)} for p in chosen
    ]


def panel_alone(request, context: Callable, template: str, *, roles, refusal: str):
    """A home panel's content without the page, for its refresh; the panel's roles are checked again here."""
    require_role(request.user, *roles, refusal=refusal)
    return render(request, template, {"panel": context(request)})
