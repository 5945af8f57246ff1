"""Demo partners: the ERP, WMS, TMS and WCS the partner simulator plays (``make run`` starts it)."""

from __future__ import annotations

from django.conf import settings

from integrations.models import Partner
from portal.actors import Actor, stamp_history

DEMO_ACTOR = Actor.system("demo-seed")

PARTNERS = [
    ("erp", "ERP (simulated)", Partner.Kind.ERP, ["orders:write", "orders:read", "availability:read", "events:write"]),
    ("wms", "WMS (simulated)", Partner.Kind.WMS, ["events:write", "orders:read"]),
    ("tms", "TMS (simulated)", Partner.Kind.TMS, ["events:write"]),
    ("wcs", "WCS (simulated)", Partner.Kind.WCS, ["events:write"]),
]


def simulator_url(kind: str) -> str:
    return f"http://127.0.0.1:{settings.SIMULATOR_PORT}/{kind}"


def _simulator_link(kind: str) -> dict[str, str]:
    """What points a demo partner at this run's simulator: its signing secret and address."""
    return {"webhook_secret": f"simulator-{kind}-secret", "outbound_base_url": simulator_url(kind)}


def seed(*, stdout=None, **_options) -> list[Partner]:
    """Create (or point at the simulator again) one partner per kind, with the simulator's signing secrets."""
    partners = []
    for code, name, kind, scopes in PARTNERS:
        partner = Partner.objects.filter(code=code).first() or Partner(code=code)
        partner.name = name
        partner.kind = kind
        partner.scopes = scopes
        for field, value in _simulator_link(kind).items():
            setattr(partner, field, value)
        partner.is_enabled = True
        stamp_history(partner, actor=DEMO_ACTOR, reason="Demo partner played by the simulator")
        partner.save()
        partners.append(partner)
    if stdout is not None:
        stdout.write(f"  {len(partners)} partners pointing at the simulator on port {settings.SIMULATOR_PORT}")
    return partners


def repoint(*, stdout=None) -> list[Partner]:
    """On a demo database loaded before: the demo partners point at this run's simulator again.

    Its address and signing secrets may have changed (another ``SIMULATOR_PORT``), and a newer
    simulator may post what an older demo partner was not allowed to: scopes it needs are added,
    none taken away, and a partner an operations admin disabled stays disabled. A missing demo
    partner is created as ``seed`` creates it.
    """
    partners = []
    for code, name, kind, scopes in PARTNERS:
        partner = Partner.objects.filter(code=code).first()
        if partner is None:
            partner = Partner(code=code, name=name, kind=kind, is_enabled=True)
        wanted = {"scopes": sorted(set(partner.scopes or []) | set(scopes)), **_simulator_link(kind)}
        if partner.pk is None or any(getattr(partner, field) != value for field, value in wanted.items()):
            for field, value in wanted.items():
                setattr(partner, field, value)
            stamp_history(partner, actor=DEMO_ACTOR, reason="Demo partner pointed at this run's simulator")
            partner.save()
        partners.append(partner)
    if stdout is not None:
        stdout.write(f"Demo partners point at the simulator on port {settings.SIMULATOR_PORT}.")
    return partners
