"""Demo network for `make run`: two warehouses, zoned locations, items with substitutes and lots, stock."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from django.db import transaction

from inventory import services
from inventory.models import (
    CarrierCutoff,
    Item,
    ItemSubstitute,
    Location,
    Lot,
    Receipt,
    VariancePolicy,
    Warehouse,
)
from portal.actors import Actor

WAREHOUSES = [
    ("DC1", "Rotterdam distribution centre", "Europe/Amsterdam", "17:00"),
    ("DC2", "Leeds regional warehouse", "Europe/London", "16:00"),
]
ZONES = ["A", "B", "C", "AMR"]
PRODUCTS = [
    ("Pallet wrap 500mm", "RL", "14.50"),
    ("Shipping carton S", "EA", "0.85"),
    ("Shipping carton M", "EA", "1.10"),
    ("Shipping carton L", "EA", "1.45"),
    ("Barcode labels 1000", "RL", "9.90"),
    ("Hand scanner", "EA", "189.00"),
    ("Safety gloves L", "PR", "3.20"),
    ("Safety gloves M", "PR", "3.20"),
    ("Hi-vis vest", "EA", "6.75"),
    ("Packing tape brown", "RL", "2.10"),
    ("Packing tape clear", "RL", "2.10"),
    ("Void fill paper", "BX", "24.00"),
    ("Label printer ribbon", "RL", "11.40"),
    ("Stretch film hand", "RL", "8.60"),
    ("Cable ties 200", "BG", "4.30"),
    ("Pallet label A5", "PK", "7.70"),
    ("Bubble wrap 750mm", "RL", "21.00"),
    ("Mailing bag M", "EA", "0.22"),
    ("Mailing bag L", "EA", "0.31"),
    ("Corner protector", "EA", "0.40"),
    ("Strapping band", "RL", "32.00"),
    ("Strapping seals", "BX", "12.00"),
    ("Box cutter", "EA", "4.90"),
    ("Marker pen black", "EA", "1.20"),
    ("Hand sanitiser 500ml", "EA", "3.90"),
    ("First aid kit", "EA", "45.00"),
    ("Pallet jack wheel", "EA", "38.00"),
    ("Shelf label holder", "EA", "0.65"),
    ("Desiccant pack", "BX", "15.00"),
    ("Thermal labels 4x6", "RL", "13.50"),
]


def seed(*, stdout, orders: int = 300, seed_value: int = 7) -> None:
    rng = random.Random(seed_value)
    actor = Actor.system("demo-loader")
    with transaction.atomic():
        VariancePolicy.objects.get_or_create(warehouse=None)
        warehouses = []
        for code, name, tz, cutoff in WAREHOUSES:
            warehouse, _ = Warehouse.objects.get_or_create(
                code=code, defaults={"name": name, "time_zone": tz, "default_cutoff_time": cutoff}
            )
            warehouses.append(warehouse)
            for carrier, service, time in [
                ("DHL", "express", "15:30"),
                ("DPD", "standard", cutoff),
                ("UPS", "standard", "16:30"),
            ]:
                CarrierCutoff.objects.get_or_create(
                    warehouse=warehouse, carrier=carrier, service_level=service, defaults={"cutoff_time": time}
                )
            sequence = 0
            for zone in ZONES:
                for aisle in range(1, 7):
                    sequence += 10
                    Location.objects.get_or_create(
                        warehouse=warehouse,
                        code=f"{zone}-{aisle:02d}-01",
                        defaults={"zone": zone, "kind": Location.Kind.PICK, "pick_sequence": sequence},
                    )
            for aisle in range(1, 5):
                Location.objects.get_or_create(
                    warehouse=warehouse,
                    code=f"R-{aisle:02d}",
                    defaults={"zone": "RESERVE", "kind": Location.Kind.RESERVE, "pick_sequence": 1000 + aisle},
                )
            Location.objects.get_or_create(
                warehouse=warehouse, code="DOCK-IN", defaults={"zone": "DOCK", "kind": Location.Kind.DOCK}
            )
            Location.objects.get_or_create(
                warehouse=warehouse, code="QC-CAGE", defaults={"zone": "QC", "kind": Location.Kind.QUARANTINE}
            )
        items = []
        for index, (description, uom, value) in enumerate(PRODUCTS, start=1):
            item, _ = Item.objects.get_or_create(
                sku=f"SKU-{index:04d}",
                defaults={
                    "description": description,
                    "unit_of_measure": uom,
                    "unit_value": Decimal(value),
                    "lot_tracked": description.startswith(("Hand sanitiser", "Desiccant")),
                },
            )
            items.append(item)
        pairs = [("SKU-0002", "SKU-0003"), ("SKU-0007", "SKU-0008"), ("SKU-0010", "SKU-0011"), ("SKU-0018", "SKU-0019")]
        for sku, substitute in pairs:
            ItemSubstitute.objects.get_or_create(
                item=Item.objects.get(sku=sku), substitute=Item.objects.get(sku=substitute)
            )
    for warehouse in warehouses:
        picks = list(warehouse.locations.filter(kind__in=[Location.Kind.PICK, Location.Kind.RESERVE]))
        for item in items:
            for location in rng.sample(picks, 2):
                lot = None
                if item.lot_tracked:
                    lot, _ = Lot.objects.get_or_create(
                        item=item,
                        code=f"L{rng.randint(1000, 9999)}",
                        defaults={"expires_on": dt.date.today() + dt.timedelta(days=rng.randint(30, 400))},
                    )
                services.stock_receive(
                    item=item,
                    location=location,
                    lot=lot,
                    quantity=rng.randint(20, 400),
                    actor=actor,
                    reason="Opening stock",
                    source_type="demo",
                    source_ref="opening",
                )
    receipts = _seed_open_receipts(warehouses, actor=actor)
    stdout.write(
        f"  {len(warehouses)} warehouses, {len(items)} items, stock in {len(ZONES)} zones each, {receipts} open receipts"
    )


# Deliveries on their way: the items demo orders run short of, so order pages show stock coming in.
OPEN_RECEIPTS = [
    ("ASN-{warehouse}-501", "Northline Supply", "", [("SKU-0004", 120), ("SKU-0014", 80)], 0),
    ("PO-{warehouse}-7702", "Baltic Packaging", "7702", [("SKU-0021", 200), ("SKU-0027", 60), ("SKU-0006", 40)], 1),
]


def _seed_open_receipts(warehouses: list[Warehouse], *, actor: Actor) -> int:
    """An expected ASN and a purchase order being received (its first line in) per warehouse; kept if present."""
    created = 0
    for warehouse in warehouses:
        dock = warehouse.locations.get(code="DOCK-IN")
        for number, supplier, purchase_order, lines, received_lines in OPEN_RECEIPTS:
            number = number.format(warehouse=warehouse.code)
            if Receipt.objects.filter(number=number).exists():
                continue
            receipt = services.receipt_create(
                number=number,
                warehouse=warehouse,
                supplier=supplier,
                document_kind=Receipt.DocumentKind.PO if purchase_order else Receipt.DocumentKind.ASN,
                purchase_order=purchase_order,
                dock=dock,
                lines=[{"item": Item.objects.get(sku=sku), "expected_quantity": quantity} for sku, quantity in lines],
                actor=actor,
                reason="Advance shipping notice from the supplier",
            )
            for line in list(receipt.lines.order_by("line_no"))[:received_lines]:
                services.receipt_receive_line(
                    line=line, quantity=line.expected_quantity, location=dock, actor=actor, reason="First pallet in"
                )
            created += 1
    return created
