"""Demo exception cases for `make run`: one of each kind the demo's order flow does not produce on its own.

Cases are raised the way production raises them — by the core's services publishing their events
(credit hold, address, partial allocation, receiving and count variances) — plus a few raised
directly where the detector lives outside the demo (carrier cutoff watch, stock reconciliation).
Some are then worked (claimed, waiting on a customer) and the SLA timer runs once, so queues show
every state.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from exceptions import services
from exceptions.models import Case
from inventory import services as inventory
from inventory.models import CarrierCutoff, Item, Location, StockLevel, Warehouse
from orchestration import services as orchestration
from orchestration.demo import first_ship_day
from orchestration.models import Customer, Order
from portal.actors import Actor
from portal.domain import DomainError

LOADER = Actor.system("demo-loader")
SHIP_TO = {"name": "Demo Receiving", "lines": ["1 Main Street"], "city": "Leeds", "postal_code": "LS1", "country": "GB"}


def _user(username: str):
    return get_user_model().objects.filter(username=username).first()


def _order(
    customer: Customer,
    warehouse: Warehouse,
    sku: str,
    quantity: int,
    *,
    ref: str,
    service_level: str = "standard",
    requested_ship_date: dt.date | None = None,
    **ship_to,
) -> Order | None:
    if requested_ship_date is None:  # a case of another kind should not also miss today's pickup
        requested_ship_date = first_ship_day(warehouse, carrier="DPD", service_level=service_level, now=timezone.now())
    try:
        order = orchestration.order_create(
            customer=customer,
            warehouse=warehouse,
            lines=[orchestration.LineInput(line_no=1, sku=sku, quantity=quantity)],
            actor=LOADER,
            source="demo",
            external_ref=ref,
            ship_to={**SHIP_TO, **ship_to},
            requested_ship_date=requested_ship_date,
            carrier="DPD",
            service_level=service_level,
        )
        return orchestration.order_process(order=order, actor=LOADER)
    except DomainError:
        return None


def seed(*, stdout, orders: int = 300) -> None:
    if Order.objects.filter(source="demo", external_ref__startswith="DEMO-EXC-").exists():
        stdout.write("  exception demo cases already loaded")
        return
    warehouse = Warehouse.objects.order_by("code").first()
    item = Item.objects.filter(stock_levels__location__warehouse=warehouse).order_by("sku").first()
    if warehouse is None or item is None:
        stdout.write("  no warehouse or stock: no exception demo cases")
        return
    tight, _ = Customer.objects.get_or_create(
        code="overlimit",
        defaults={"name": "Over Limit Ltd", "credit_limit": Decimal("100"), "default_warehouse": warehouse},
    )
    whole, _ = Customer.objects.get_or_create(
        code="wholeonly",
        defaults={"name": "Whole Orders Only", "credit_limit": Decimal("500000"), "allows_split_shipment": False},
    )
    missing, _ = Item.objects.get_or_create(
        sku="DEMO-NOSTOCK", defaults={"description": "Seasonal item, not yet in stock", "unit_value": Decimal("42.00")}
    )
    _order(tight, warehouse, item.sku, 20, ref="DEMO-EXC-CREDIT")
    _order(whole, warehouse, missing.sku, 12, ref="DEMO-EXC-PARTIAL")
    _order(whole, warehouse, item.sku, 2, ref="DEMO-EXC-ADDRESS", city="")
    late = _order(
        whole,
        warehouse,
        item.sku,
        3,
        ref="DEMO-EXC-CUTOFF",
        service_level="evening",
        requested_ship_date=orchestration.local_now(warehouse).date(),
    )

    dock = Location.objects.filter(warehouse=warehouse).order_by("pick_sequence").first()
    try:
        receipt = inventory.receipt_create(
            number="ASN-DEMO-EXC",
            warehouse=warehouse,
            supplier="Acme Supply",
            lines=[{"item": item, "expected_quantity": 200}],
            actor=Actor.partner("erp-demo"),
            reason="ASN received",
        )
        inventory.receipt_receive_line(line=receipt.lines.get(), quantity=170, location=dock, actor=LOADER)
        inventory.receipt_close(receipt=receipt, actor=LOADER, reason="Unloaded")
    except DomainError as error:
        stdout.write(f"  receipt not loaded: {error.message}")

    supervisor = _user("supervisor")
    level = StockLevel.objects.filter(item=item, location__warehouse=warehouse).order_by("pk").first()
    if level is not None:
        counter = Actor.partner("wms-demo")  # counted on a WMS handheld: the demo supervisor may approve it
        count = inventory.count_request(stock_level=level, actor=LOADER, reason="Weekly cycle count")
        try:
            inventory.count_record(count=count, counted_quantity=max(0, level.on_hand - 25), actor=counter)
        except DomainError as error:
            stdout.write(f"  count not recorded: {error.message}")
        services.case_raise(
            type_code="inventory_mismatch",
            subject=level,
            subject_label=f"{item.sku} at {level.location.code}",
            summary=f"WMS reports {level.on_hand + 6} of {item.sku} at {level.location.code}; the portal has {level.on_hand}",
            context={
                "sku": item.sku,
                "location": level.location.code,
                "wms": level.on_hand + 6,
                "portal": level.on_hand,
            },
            actor=Actor.system("reconciliation"),
            reason="Nightly stock reconciliation",
            warehouse=warehouse,
            materiality=Decimal(6) * item.unit_value,
        )
    if late is not None:
        # DPD's evening pickup closes 20 minutes from now: the cutoff watch itself warns about the unpacked order.
        pickup = (orchestration.local_now(warehouse) + dt.timedelta(minutes=20)).time().replace(second=0, microsecond=0)
        CarrierCutoff.objects.update_or_create(
            warehouse=warehouse, carrier="DPD", service_level="evening", defaults={"cutoff_time": pickup}
        )
        orchestration.orders_watch_cutoffs()

    _work_some(supervisor)
    changed = services.cases_check_sla(now=timezone.now())
    stdout.write(f"  {Case.objects.active().count()} open exception cases ({changed} escalated or at risk)")


# What customer service asks the customer while the first case of its queue waits on them.
WAITING_QUESTIONS = {
    "address_invalid": "Asked the customer for the missing ship-to details",
    "partial_shipment_decision": "Asked the customer whether to ship in part",
    "substitution_approval": "Asked the customer whether the substitute is acceptable",
}


def _work_some(supervisor) -> None:
    """Claim one case per queue that has a person, and put one customer-service case on hold with the customer."""
    people = {
        role: _user(username)
        for role, username in [
            ("warehouse_supervisor", "supervisor"),
            ("customer_service", "service"),
            ("finance", "finance"),
        ]
    }
    for role, person in people.items():
        if person is None:
            continue
        case = Case.objects.active().filter(queue__code=role).order_by("pk").first()
        if case is None:
            continue
        try:
            services.case_claim(case=case, actor=Actor.for_user(person))
            if role == "customer_service":
                question = WAITING_QUESTIONS.get(case.type.code, "Asked the customer how to proceed")
                services.case_wait_on_external(case=case, actor=Actor.for_user(person), reason=question)
        except DomainError:
            continue
