"""Demo customers and a few hundred orders in mixed states for `make run`."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from inventory.models import Item, Warehouse
from orchestration import services
from orchestration.models import Customer, Order, ReleasePolicy, Task
from portal.actors import Actor
from portal.domain import DomainError

CUSTOMERS = [
    ("acme", "Acme Retail", "250000", "key_account", True, True),
    ("northwind", "Northwind Traders", "60000", "priority", True, False),
    ("globex", "Globex Stores", "40000", "standard", False, False),
    ("initech", "Initech Supplies", "15000", "standard", True, True),
    ("umbrella", "Umbrella Pharmacy", "90000", "priority", False, True),
    ("hooli", "Hooli Online", "120000", "key_account", True, False),
    ("smallco", "Small & Co", "3000", "standard", True, False),
]
CITIES = [
    ("Rotterdam", "3011 AA", "NL"),
    ("Leeds", "LS1 4AP", "GB"),
    ("Antwerp", "2000", "BE"),
    ("Lyon", "69002", "FR"),
]


def seed(*, stdout, orders: int = 300, seed_value: int = 11) -> None:
    rng = random.Random(seed_value)
    actor = Actor.system("demo-loader")
    ReleasePolicy.objects.get_or_create(warehouse=None, defaults={"name": "Network default"})
    warehouses = list(Warehouse.objects.order_by("code"))
    customers = []
    for code, name, limit, tier, split, substitution in CUSTOMERS:
        customer, _ = Customer.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "credit_limit": Decimal(limit),
                "service_tier": tier,
                "allows_split_shipment": split,
                "allows_substitution": substitution,
                "default_warehouse": rng.choice(warehouses),
            },
        )
        customers.append(customer)
    skus = list(Item.objects.values_list("sku", flat=True))
    # Bigger accounts order more (in step with the square root of their credit, as the simulator sends
    # them), so the small accounts' credit holds are a day's few, not a fifth of the orders.
    shares = [float(customer.credit_limit) ** 0.5 for customer in customers]
    now = timezone.now()
    created = 0
    for number in range(orders):
        (customer,) = rng.choices(customers, weights=shares)
        city, postal, country = rng.choice(CITIES)
        carrier = rng.choice(["DHL", "DPD", "UPS"])
        service_level = rng.choice(["standard", "standard", "express"])
        first_day = first_ship_day(customer.default_warehouse, carrier=carrier, service_level=service_level, now=now)
        lines = [
            services.LineInput(line_no=i, sku=sku, quantity=rng.randint(1, 40))
            for i, sku in enumerate(rng.sample(skus, rng.randint(1, 5)), start=1)
        ]
        address_ok = rng.random() > 0.03
        try:
            order = services.order_create(
                customer=customer,
                lines=lines,
                actor=actor,
                source="demo",
                external_ref=f"DEMO-{number:05d}",
                ship_to={
                    "name": customer.name,
                    "lines": ["1 Main Street"] if address_ok else [],
                    "city": city,
                    "postal_code": postal,
                    "country": country,
                },
                requested_ship_date=first_day + dt.timedelta(days=rng.choice([0, 0, 1, 1, 2, 5])),
                carrier=carrier,
                service_level=service_level,
                priority=rng.choice([1, 2, 2, 2, 3, 4]),
            )
            order = services.order_process(order=order, actor=actor)
            advance(order, rng, actor)
            created += 1
        except DomainError as error:
            stdout.write(f"  skipped demo order {number}: {error.message}")
    stdout.write(f"  {len(customers)} customers, {created} orders")


def first_ship_day(warehouse: Warehouse, *, carrier: str, service_level: str, now: dt.datetime) -> dt.date:
    """The warehouse's today while the carrier's pickup can still be made, else tomorrow.

    An order that asks for today after today's pickup has gone (or inside the warning window
    before it) is a carrier-cutoff case the moment the watch runs: loaded in the evening, a
    third of the demo would open at once in the transport queue.
    """
    cutoff = services.pickup_cutoff(warehouse, carrier=carrier, service_level=service_level, now=now)
    today = services.local_now(warehouse, now).date()
    if now < cutoff - dt.timedelta(minutes=settings.CUTOFF_WARNING_MINUTES):
        return today
    return today + dt.timedelta(days=1)


# Most picks come out right; a few pick faces are often short (a miscounted bin, a carton flow lane that jams).
# That is the pattern a real warehouse's history holds, and what the risk model has to find in the demo's.
SHORT_RATE = 0.01
TROUBLE_SKUS = {"SKU-0004": 0.7, "SKU-0014": 0.7, "SKU-0021": 0.6}


def advance(order: Order, rng: random.Random, actor: Actor) -> None:
    """Move some released orders further along: picking, short picks, packing, shipping, invoicing."""
    if order.status != Order.Status.RELEASED or rng.random() < 0.35:
        return
    picker = Actor.system("demo-picker")
    for task in order.tasks.filter(kind=Task.Kind.PICK).select_related("item"):
        services.task_dispatch(task=task, actor=picker)
        short = rng.random() < TROUBLE_SKUS.get(task.item.sku, SHORT_RATE)
        services.task_complete(
            task=task, actor=picker, done_quantity=task.quantity - (1 if short and task.quantity > 1 else 0)
        )
    order.refresh_from_db()
    pack = order.tasks.filter(kind=Task.Kind.PACK).first()
    if pack is None or rng.random() < 0.3:
        return
    services.task_dispatch(task=pack, actor=picker)
    services.task_complete(task=pack, actor=picker)
    if rng.random() < 0.4:
        return
    shipment = order.shipments.first()
    services.shipment_ship(
        shipment=shipment,
        carrier=order.carrier or "DPD",
        tracking_number=f"TRK{rng.randint(10**9, 10**10)}",
        actor=Actor.partner("tms-demo"),
    )
    if rng.random() < 0.5:
        services.order_invoice(order=order, actor=Actor.partner("erp-demo"))
