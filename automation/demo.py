"""Demo equipment per warehouse zone, default risk policies, a few sample rules, and a first risk model."""

from __future__ import annotations

from django.utils import timezone

from automation import risk, services
from automation.models import Equipment, RiskPolicy, Rule
from inventory.models import Warehouse
from portal.actors import Actor

# code suffix, name, kind, zone, task kinds, zones served
UNITS = [
    ("AMR-1", "AMR fleet north", Equipment.Kind.AMR_FLEET, "AMR", ["pick", "move", "replenish", "putaway"], ["AMR"]),
    ("AMR-2", "AMR fleet south", Equipment.Kind.AMR_FLEET, "AMR", ["pick", "move", "replenish", "putaway"], ["AMR"]),
    ("PTL-A", "Pick-to-light zone A", Equipment.Kind.PICK_TO_LIGHT, "A", ["pick"], ["A"]),
    ("ASRS-1", "Mini-load AS/RS", Equipment.Kind.ASRS, "RESERVE", ["replenish", "putaway", "move"], ["RESERVE"]),
    ("CONV-1", "Tote conveyor A–C", Equipment.Kind.CONVEYOR, "A", [], ["A", "B", "C"]),
    ("SORT-1", "Parcel sorter", Equipment.Kind.SORTER, "PACK", [], ["PACK"]),
]

POLICIES = [
    (
        "Flag high-risk orders to customer service",
        RiskPolicy.Decision.FLAG_HIGH_RISK_ORDER,
        "",
        RiskPolicy.Mode.ADVISORY,
        0.6,
    ),
    (
        "Suggest resolutions for every case type",
        RiskPolicy.Decision.CASE_RESOLUTION,
        "",
        RiskPolicy.Mode.ADVISORY,
        0.85,
    ),
]

RULES = [
    {
        "name": "Key accounts over 5,000 go urgent",
        "trigger": "order.allocated",
        "order": 10,
        "enabled": True,
        "mode": Rule.Mode.AUTOMATIC,
        "conditions": {
            "all": [
                {"field": "service_tier", "op": "eq", "value": "key_account"},
                {"field": "value", "op": "gt", "value": 5000},
            ]
        },
        "actions": [{"type": "set_priority", "priority": 4}],
    },
    {
        "name": "Backordered priority orders: tell customer service",
        "trigger": "order.allocated",
        "order": 20,
        "enabled": True,
        "mode": Rule.Mode.AUTOMATIC,
        "conditions": {
            "all": [
                {"field": "outcome", "op": "in", "value": ["backordered", "partially_allocated"]},
                {"field": "service_tier", "op": "in", "value": ["priority", "key_account"]},
            ]
        },
        "actions": [
            {
                "type": "notify_role",
                "role": "customer_service",
                "message": "A priority customer's order could not be fully allocated",
            }
        ],
    },
    {
        "name": "Machine short picks: hold for review (advisory)",
        "trigger": "task.short_picked",
        "order": 10,
        "enabled": True,
        "mode": Rule.Mode.ADVISORY,
        "conditions": {
            "all": [
                {"field": "performer", "op": "eq", "value": "machine"},
                {"field": "shortfall", "op": "gte", "value": 2},
            ]
        },
        "actions": [
            {
                "type": "notify_role",
                "role": "warehouse_supervisor",
                "message": "Machine reported a short of 2 or more units",
            }
        ],
    },
    {
        "name": "Large orders to high-risk countries: hold (draft)",
        "trigger": "order.allocated",
        "order": 30,
        "enabled": False,
        "mode": Rule.Mode.ADVISORY,
        "conditions": {
            "all": [
                {"field": "ship_to_country", "op": "in", "value": ["FR"]},
                {"field": "value", "op": "between", "value": [10000, 1000000]},
            ]
        },
        "actions": [{"type": "hold_order", "reason": "Large export order: check documents first"}],
    },
]


def seed(*, stdout, orders: int = 300) -> None:
    actor = Actor.system("demo-loader")
    now = timezone.now()
    units = 0
    for warehouse in Warehouse.objects.order_by("code"):
        for suffix, name, kind, zone, kinds, zones in UNITS:
            equipment = services.equipment_register(
                code=f"{warehouse.code}-{suffix}".lower(),
                name=name,
                kind=kind,
                warehouse=warehouse,
                zone=zone,
                capabilities={"task_kinds": kinds, "zones": zones},
                actor=actor,
                reason="Demo equipment",
                ack_timeout_seconds=30,
                heartbeat_timeout_seconds=90,
                max_dispatch_attempts=3,
            )
            services.equipment_heartbeat(equipment=equipment, now=now, actor=actor)
            units += 1
    for name, decision, case_type, mode, threshold in POLICIES:
        RiskPolicy.objects.get_or_create(
            decision=decision,
            case_type_code=case_type,
            defaults={"name": name, "mode": mode, "confidence_threshold": threshold},
        )
    for spec in RULES:
        if not Rule.objects.filter(name=spec["name"]).exists():
            rule = Rule(**spec)
            rule.full_clean()
            rule.save()
    report = risk.train(trained_by="system:demo-loader")
    fitted = report.metrics.get("at_fitted", {}) if report.metrics else {}
    quality = (
        f"on {report.test_orders} held-out orders: precision {fitted.get('precision') or 0:.2f}, "
        f"recall {fitted.get('recall') or 0:.2f}"
        if fitted
        else report.note
    )
    stdout.write(
        f"  {units} equipment units, {len(POLICIES)} risk policies, {len(RULES)} rules, "
        f"risk model v{report.version} on {report.orders} orders ({quality})"
    )
    # Work instructions go out once the worker and the simulated WCS run (beat's dispatch): sent now, before
    # either has started, every one would miss its acknowledgement deadline and count against its unit.
