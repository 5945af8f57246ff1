"""The starting configuration: one queue per role, SLA policies with escalation ladders, the exception types
and a few example routing rules. Operations admins change all of it in the admin afterwards.

``seed_defaults`` is idempotent (it only adds what is missing, by natural key) and runs from the data
migration with historical models, and from tests whose database was flushed.
"""

from __future__ import annotations

from decimal import Decimal

from portal.roles import QUEUE_ROLES, Role

SUPERVISOR = Role.WAREHOUSE_SUPERVISOR.value
SERVICE = Role.CUSTOMER_SERVICE.value
FINANCE = Role.FINANCE.value
PROCUREMENT = Role.PROCUREMENT.value
TRANSPORT = Role.TRANSPORTATION.value
IT = Role.IT_SUPPORT.value
ADMIN = Role.OPERATIONS_ADMIN.value

QUEUE_DESCRIPTIONS = {
    SUPERVISOR: "Short picks, damaged stock, automation faults, count variances and stock mismatches.",
    SERVICE: "Partial-shipment and substitution decisions, address problems.",
    FINANCE: "Credit holds and invoices held after receiving variances.",
    PROCUREMENT: "Receiving variances against ASN or purchase order, supplier disputes.",
    TRANSPORT: "Carrier cutoff misses and shipment exceptions.",
    IT: "Integration failures, dead letters and replays.",
}

# name: (first response minutes, resolution minutes, at-risk percent, [(after minutes, action, target, role)])
SLA_POLICIES = {
    "Urgent floor": (
        15,
        120,
        75,
        [
            (15, "raise_priority", "", ""),
            (60, "notify", "", ADMIN),
            (120, "raise_priority", "", ""),
        ],
    ),
    "Standard": (
        60,
        8 * 60,
        75,
        [
            (60, "raise_priority", "", ""),
            (4 * 60, "notify", "", ADMIN),
        ],
    ),
    "Back office": (
        4 * 60,
        2 * 24 * 60,
        80,
        [
            (24 * 60, "raise_priority", "", ""),
            (2 * 24 * 60, "notify", "", ADMIN),
        ],
    ),
}


def _res(code: str, label: str, *roles: str) -> dict:
    return {"code": code, "label": label, "roles": list(roles)}


# code: (name, description, default severity, default queue, SLA policy, resolutions)
EXCEPTION_TYPES = {
    "short_pick": (
        "Short pick",
        "A picker or machine found fewer units than reserved; the line needs a decision.",
        "high",
        SUPERVISOR,
        "Urgent floor",
        [
            _res("reallocate", "Reallocate from another location or warehouse", SUPERVISOR),
            _res("backorder", "Backorder the rest", SUPERVISOR, SERVICE),
            _res("ship_partial", "Ship what was picked", SUPERVISOR, SERVICE),
            _res("substitute", "Ship a substitute", SUPERVISOR, SERVICE),
            _res("cancel_line", "Cancel the rest of the line", SUPERVISOR, SERVICE),
        ],
    ),
    "damaged_stock": (
        "Damaged stock",
        "Units were found damaged; they are held until someone decides.",
        "medium",
        SUPERVISOR,
        "Standard",
        [
            _res("reallocate", "Reallocate affected lines", SUPERVISOR),
            _res("backorder", "Backorder affected lines", SUPERVISOR),
            _res("investigate", "Count the location", SUPERVISOR),
            _res("acknowledge", "Acknowledge", SUPERVISOR),
        ],
    ),
    "automation_fault": (
        "Automation fault",
        "A unit behind the WCS jammed, faulted, stalled on a task or stopped reporting; the case says what happened to its work.",
        "high",
        SUPERVISOR,
        "Urgent floor",
        [_res("acknowledge", "Acknowledge", SUPERVISOR)],
    ),
    "carrier_cutoff_miss": (
        "Carrier cutoff miss",
        "An order will miss (or missed) today's carrier pickup.",
        "high",
        TRANSPORT,
        "Urgent floor",
        [
            _res("reassign_carrier", "Book another carrier or service", TRANSPORT),
            _res("wait", "Ship with the next pickup", TRANSPORT),
            _res("cancel_order", "Cancel the order", TRANSPORT, SERVICE),
        ],
    ),
    "partial_shipment_decision": (
        "Partial-shipment decision",
        "Not everything is available and the customer does not accept split shipments.",
        "medium",
        SERVICE,
        "Standard",
        [
            _res("ship_partial", "Ship what is available (customer agreed)", SERVICE),
            _res("wait", "Wait for the rest", SERVICE),
            _res("cancel_order", "Cancel the order", SERVICE),
        ],
    ),
    "credit_hold": (
        "Credit hold",
        "The order takes the customer over their credit limit, or the customer is blocked.",
        "medium",
        FINANCE,
        "Back office",
        [
            _res("release_hold", "Release the credit hold", FINANCE),
            _res("cancel_order", "Cancel the order", FINANCE),
        ],
    ),
    "receiving_variance": (
        "Receiving variance",
        "What arrived differs from the ASN or purchase order beyond tolerance; the supplier invoice is held.",
        "medium",
        PROCUREMENT,
        "Back office",
        [
            _res("accept_variance", "Accept what was received", PROCUREMENT),
            _res("dispute_variance", "Dispute with the supplier (invoice stays on hold)", PROCUREMENT),
        ],
    ),
    "count_variance": (
        "Count variance",
        "A cycle count differs from the system beyond tolerance and needs an approver other than the counter.",
        "medium",
        SUPERVISOR,
        "Standard",
        [
            _res("approve_adjustment", "Approve the adjustment", SUPERVISOR),
            _res("reject_count", "Reject the count (recount)", SUPERVISOR),
        ],
    ),
    "address_invalid": (
        "Address invalid",
        "The ship-to address is incomplete; the order is on hold until it is corrected.",
        "medium",
        SERVICE,
        "Standard",
        [
            _res("fix_address", "Correct the address and continue", SERVICE),
            _res("cancel_order", "Cancel the order", SERVICE),
        ],
    ),
    "inventory_mismatch": (
        "Inventory mismatch",
        "The portal's stock and the WMS disagree.",
        "medium",
        SUPERVISOR,
        "Standard",
        [
            _res("investigate", "Count the location", SUPERVISOR),
            _res("acknowledge", "Acknowledge", SUPERVISOR),
        ],
    ),
    "integration_failure": (
        "Integration failure",
        "A message to or from a partner system failed; correct it and replay it, or discard it.",
        "high",
        IT,
        "Standard",
        [
            _res("replay", "Replay the message", IT),
            _res("discard", "Discard the message", IT),
        ],
    ),
    "substitution_approval": (
        "Substitution approval",
        "A substitute could ship instead of the ordered item; the customer's agreement is needed.",
        "medium",
        SERVICE,
        "Standard",
        [
            _res("substitute", "Ship the substitute", SERVICE),
            _res("backorder", "Backorder instead", SERVICE),
            _res("cancel_line", "Cancel the line", SERVICE),
        ],
    ),
}

# name: (position, type code, customer tier, min severity, min materiality, queue, priority, SLA policy)
ROUTING_RULES = {
    "Key-account short picks over 5,000": (
        10,
        "short_pick",
        "key_account",
        "",
        Decimal("5000"),
        SUPERVISOR,
        4,
        "Urgent floor",
    ),
    "Credit holds of key accounts": (20, "credit_hold", "key_account", "", None, FINANCE, 3, "Standard"),
    "Receiving variances over 10,000": (30, "receiving_variance", "", "", Decimal("10000"), PROCUREMENT, 3, "Standard"),
}


def _models(apps):
    if apps is None:
        from django.apps import apps as live_apps

        apps = live_apps
    names = ["Queue", "SlaPolicy", "EscalationStep", "ExceptionType", "RoutingRule"]
    return [apps.get_model("exceptions", name) for name in names]


def seed_defaults(apps=None) -> None:
    """Add the default queues, SLA policies, exception types and example rules that are missing."""
    Queue, SlaPolicy, EscalationStep, ExceptionType, RoutingRule = _models(apps)
    queues = {}
    for role in QUEUE_ROLES:
        queues[role.value], _ = Queue.objects.get_or_create(
            code=role.value,
            defaults={"name": role.label, "role": role.value, "description": QUEUE_DESCRIPTIONS.get(role.value, "")},
        )
    policies = {}
    for name, (first_response, resolution, at_risk, steps) in SLA_POLICIES.items():
        policy, created = SlaPolicy.objects.get_or_create(
            name=name,
            defaults={
                "first_response_minutes": first_response,
                "resolution_minutes": resolution,
                "at_risk_percent": at_risk,
            },
        )
        policies[name] = policy
        if created:
            for position, (after, action, target, role) in enumerate(steps, start=1):
                EscalationStep.objects.create(
                    policy=policy,
                    position=position,
                    after_minutes=after,
                    action=action,
                    target_queue=queues.get(target),
                    notify_role=role,
                )
    types = {}
    for code, (name, description, severity, queue, policy, resolutions) in EXCEPTION_TYPES.items():
        types[code], _ = ExceptionType.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "description": description,
                "default_severity": severity,
                "default_queue": queues[queue],
                "sla_policy": policies[policy],
                "resolutions": resolutions,
            },
        )
    for name, (position, type_code, tier, severity, materiality, queue, priority, policy) in ROUTING_RULES.items():
        RoutingRule.objects.get_or_create(
            name=name,
            defaults={
                "position": position,
                "exception_type": types[type_code],
                "customer_tier": tier,
                "min_severity": severity,
                "min_materiality": materiality,
                "target_queue": queues[queue],
                "priority": priority,
                "sla_policy": policies[policy],
            },
        )
