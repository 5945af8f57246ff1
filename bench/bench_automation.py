"""The rules engine and risk scoring, each beside the work it rides on.

* Rules evaluated per second: 200 enabled rules (mixed triggers, nested all/any conditions over
  payload and order fields, about one in twenty matching) evaluated against real order events
  inside a rolled-back transaction.
* The added latency per order transition: order intake (create → validate → credit → allocate,
  three transitions that are rule triggers) with 200 rules versus with none, per transition.
* Scoring time per order versus reading the same order and its lines with raw SQL.
"""

from __future__ import annotations

import random
import statistics
import time

WAREHOUSE_CODE = "BENCH-AUT"
ORDERS = 120
RULES = 200
SCORED = 200


def run(context) -> dict[str, float]:
    customers, skus = _seed()
    from automation.models import Rule

    Rule.objects.filter(name__startswith="bench ").delete()
    intake_without = _intake_ms(customers, skus, ORDERS, label="no rules")
    _make_rules(RULES)
    intake_with = _intake_ms(customers, skus, ORDERS, label=f"{RULES} rules")
    rules_per_s, evaluated = _rules_per_second()
    score_ms, read_ms = _scoring_ms()
    transitions = 3  # received, validated, allocated: each publishes a rule trigger
    added = (intake_with - intake_without) / transitions
    return {
        "rules_enabled": RULES,
        "rules_evaluated_per_s": round(rules_per_s, 1),
        "rules_evaluated_sample": evaluated,
        "order_intake_no_rules_ms": round(intake_without, 2),
        "order_intake_200_rules_ms": round(intake_with, 2),
        "rules_added_latency_per_transition_ms": round(added, 3),
        "order_intake_200_rules_vs_none_ratio": round(intake_with / intake_without, 3) if intake_without else 0.0,
        "risk_score_per_order_ms": round(score_ms, 3),
        "order_read_sql_baseline_ms": round(read_ms, 3),
        "risk_score_vs_sql_read_ratio": round(score_ms / read_ms, 2) if read_ms else 0.0,
    }


# --- seeding -------------------------------------------------------------------------------


def _seed() -> tuple[list, list[str]]:
    """One warehouse with 50 stocked items and three customers, one per service tier."""
    from decimal import Decimal

    from inventory import services as inventory
    from inventory.models import Item, Location, StockLevel, Warehouse
    from orchestration.models import Customer
    from portal.actors import Actor

    actor = Actor.system("bench-seed")
    warehouse, _ = Warehouse.objects.get_or_create(code=WAREHOUSE_CODE, defaults={"name": "Automation benchmark"})
    location, _ = Location.objects.get_or_create(
        warehouse=warehouse, code="A-01", defaults={"zone": "A", "kind": Location.Kind.PICK, "pick_sequence": 10}
    )
    skus = [f"AUT-{index:03d}" for index in range(1, 51)]
    Item.objects.bulk_create(
        [Item(sku=sku, description=f"Automation benchmark item {sku}") for sku in skus], ignore_conflicts=True
    )
    for item in Item.objects.filter(sku__in=skus):
        if not StockLevel.objects.filter(item=item, location=location, on_hand__gt=0).exists():
            inventory.stock_receive(item=item, location=location, quantity=1_000_000, actor=actor, reason="Bench stock")
    customers = []
    for tier in ("standard", "priority", "key_account"):
        customer, _ = Customer.objects.get_or_create(
            code=f"bench-{tier.replace('_', '-')}",
            defaults={
                "name": f"Benchmark {tier}",
                "credit_limit": Decimal("100000000"),
                "service_tier": tier,
                "default_warehouse": warehouse,
            },
        )
        customers.append(customer)
    return customers, skus


def _make_rules(count: int) -> None:
    """`count` enabled advisory rules spread over the order triggers; roughly one in twenty matches."""
    from automation.models import Rule

    rng = random.Random(7)
    triggers = ["order.received", "order.validated", "order.allocated"]
    rules = []
    for index in range(count):
        trigger = triggers[index % len(triggers)]
        matches = index % 20 == 0
        threshold = 0 if matches else 10_000_000 + rng.randint(0, 1000)
        conditions = {
            "all": [
                {"field": "value", "op": "gt", "value": threshold},
                {
                    "any": [
                        {"field": "service_tier", "op": "in", "value": ["standard", "priority", "key_account"]},
                        {"field": "priority", "op": "gte", "value": rng.randint(1, 4)},
                    ]
                },
            ]
        }
        if trigger == "order.allocated":
            conditions["all"].append(
                {"field": "outcome", "op": "in", "value": ["allocated", "partially_allocated", "backordered"]}
            )
        rules.append(
            Rule(
                name=f"bench {index:03d}",
                trigger=trigger,
                conditions=conditions,
                actions=[{"type": "notify_role", "role": "customer_service", "message": "benchmark rule"}],
                order=index,
                enabled=True,
                mode=Rule.Mode.ADVISORY,
                version=1,
            )
        )
    Rule.objects.bulk_create(rules)


# --- measurements --------------------------------------------------------------------------


def _intake_ms(customers, skus: list[str], orders: int, *, label: str) -> float:
    """Median milliseconds to create and process one 3-line order (three rule-trigger transitions)."""
    from orchestration import services as orchestration
    from portal.actors import Actor

    actor = Actor.system("bench")
    rng = random.Random(len(label))
    timings = []
    for index in range(orders):
        lines = [
            orchestration.LineInput(line_no=n, sku=rng.choice(skus), quantity=rng.randint(1, 5)) for n in (1, 2, 3)
        ]
        ship_to = {"name": "Bench", "lines": "1 Quay", "city": "Porto", "postal_code": "4000", "country": "PT"}
        started = time.perf_counter()
        order = orchestration.order_create(
            customer=customers[index % len(customers)],
            lines=lines,
            actor=actor,
            external_ref=f"bench-{label}-{index}-{time.time_ns()}",
            ship_to=ship_to,
        )
        orchestration.order_process(order=order, actor=actor)
        timings.append((time.perf_counter() - started) * 1000)
    print(f"    order intake with {label}: median {statistics.median(timings):.2f} ms over {orders} orders", flush=True)
    return statistics.median(timings)


def _rules_per_second() -> tuple[float, int]:
    """Rules evaluated per second over the order events of the benchmark orders (rolled back)."""
    from django.db import transaction

    from automation import rules
    from portal.models import DomainEvent

    events = list(
        DomainEvent.objects.filter(
            name__in=["order.received", "order.validated", "order.allocated"], subject_type="orchestration.order"
        ).order_by("-pk")[:300]
    )
    evaluated = 0
    elapsed = 0.0
    with transaction.atomic():
        for event in events:
            started = time.perf_counter()
            result = rules.evaluate_event(event)
            elapsed += time.perf_counter() - started
            evaluated += result.rules_evaluated
        transaction.set_rollback(True)
    return (evaluated / elapsed if elapsed else 0.0), evaluated


def _scoring_ms() -> tuple[float, float]:
    """Median ms to score one open order, beside a raw SQL read of the order with its lines."""
    from django.db import connection
    from django.utils import timezone

    from automation import risk
    from orchestration.models import Order

    order_ids = list(
        Order.objects.filter(warehouse__code=WAREHOUSE_CODE).order_by("-pk").values_list("pk", flat=True)[:SCORED]
    )
    now = timezone.now()
    scores, reads = [], []
    for order_id in order_ids:
        started = time.perf_counter()
        risk.assess_order(order_id, now=now)
        scores.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT o.*, l.* FROM orchestration_order o JOIN orchestration_orderline l ON l.order_id = o.id "
                "WHERE o.id = %s",
                [order_id],
            )
            cursor.fetchall()
        reads.append((time.perf_counter() - started) * 1000)
    return statistics.median(scores), statistics.median(reads)
