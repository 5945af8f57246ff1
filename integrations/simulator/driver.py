"""The simulator's active side: orders into the portal's API, warehouse and carrier events back to it."""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import hmac
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx

from integrations.simulator.wcs import MachineFloor

logger = logging.getLogger("integrations.simulator")
BASE_DIR = Path(__file__).resolve().parents[2]


def signed_headers(token: str, secret: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "X-Timestamp": timestamp,
        "X-Signature": f"sha256={signature}",
    }


def requested_ship_date(now: dt.datetime, same_day_until: dt.time) -> dt.date:
    """What the ERP asks for: today while its same-day order cutoff (UTC) is ahead, else tomorrow.

    An order taken in the evening for today would miss every carrier pickup before anyone saw it.
    """
    today = now.astimezone(dt.UTC).date()
    return today if now.astimezone(dt.UTC).time() < same_day_until else today + dt.timedelta(days=1)


def issue_token(partner_code: str) -> str | None:
    """A fresh token through ``manage.py partner_token <code>`` (the last printed line that looks like one)."""
    try:
        result = subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), "partner_token", partner_code],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=BASE_DIR,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    tokens = [word for line in result.stdout.splitlines() for word in line.split() if word.startswith("pt_")]
    return tokens[-1] if tokens else None


def _django() -> None:
    """Set Django up in this process (idempotent): the simulator reads master data straight from the portal's database."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()


def master_data() -> tuple[dict[str, float], list[str]]:
    """Customers with how much of the order flow each sends, and active SKUs, as the ERP's master data has them.

    A customer orders roughly in step with the size of their account (the square root of their
    credit limit): key accounts send most of the orders, a small account now and then, so a
    living demo puts a credit hold in front of finance every few minutes rather than every few seconds.
    """
    _django()
    from inventory.models import Item
    from orchestration.models import Customer

    limits = Customer.objects.order_by("code").values_list("code", "credit_limit")[:50]
    customers = {code: max(1.0, float(limit)) ** 0.5 for code, limit in limits}
    skus = list(Item.objects.filter(is_active=True).order_by("sku").values_list("sku", flat=True)[:200])
    return customers, skus


def pick_faces() -> dict[tuple[str, str], str]:
    """Where each SKU is put away at each warehouse, as the WMS's slotting would say: (warehouse, sku) -> location.

    Lot-tracked items are left out: their deliveries come with the supplier's lots, which the simulator does not invent.
    """
    _django()
    from inventory.models import Location, StockLevel

    faces: dict[tuple[str, str], str] = {}
    rows = (
        StockLevel.objects.filter(location__kind=Location.Kind.PICK, item__is_active=True, item__lot_tracked=False)
        .order_by("location__pick_sequence", "pk")
        .values_list("location__warehouse__code", "item__sku", "location__code")
    )
    for warehouse, sku, location in rows:
        faces.setdefault((warehouse, sku), location)
    return faces


def on_hand(warehouse: str, location: str, sku: str, lot: str = "") -> int | None:
    """What is physically at the location: the simulated floor holds what the portal's ledger says it does."""
    _django()
    from inventory.models import StockLevel

    rows = StockLevel.objects.filter(location__warehouse__code=warehouse, location__code=location, item__sku=sku)
    rows = rows.filter(lot__code=lot) if lot else rows.filter(lot__isnull=True)
    return rows.values_list("on_hand", flat=True).first()


def customer_balances() -> dict[str, Decimal]:
    """Each customer's open balance as the ERP's receivables ledger starts the day."""
    _django()
    from orchestration.models import Customer

    return dict(Customer.objects.values_list("code", "open_balance"))


def machine_units() -> list[str]:
    """The equipment the WCS runs, as the WCS's own configuration would list it."""
    _django()
    from automation.models import Equipment

    return list(Equipment.objects.filter(is_active=True).order_by("code").values_list("code", flat=True))


class Driver:
    """Sends orders at a rate and reacts to the portal's messages like a warehouse and a carrier would."""

    def __init__(
        self,
        *,
        portal: str,
        tokens: dict[str, str],
        secrets: dict[str, str],
        order_rate: float,
        short_rate: float,
        same_day_until: dt.time = dt.time(14, 0),
        work_seconds: float,
        customers: dict[str, float],
        skus: list[str],
        seed: int | None = None,
        wcs_units: tuple[str, ...] = (),
        heartbeat_seconds: float = 5.0,
        balances: dict[str, Decimal] | None = None,
        payment_seconds: float = 300.0,
        faces: dict[tuple[str, str], str] | None = None,
        receipt_seconds: float = 120.0,
        shelf: Callable[..., int | None] = on_hand,
    ):
        self.portal = portal.rstrip("/")
        self.tokens = tokens
        self.secrets = secrets
        self.order_rate = order_rate
        self.same_day_until = same_day_until
        self.short_rate = short_rate
        self.work_seconds = work_seconds
        # Who orders, and how large a share of the orders each sends.
        self.customers = list(customers)
        self.order_shares = list(customers.values())
        self.skus = skus
        self.rng = random.Random(seed)
        self.client = httpx.Client(timeout=10.0)
        self.agenda: list[tuple[float, int, object]] = []
        self.agenda_lock = threading.Condition()
        self.counter = 0
        self.sent = {"orders": 0, "orders_refused": 0, "events": 0, "events_refused": 0, "invoices": 0}
        # The ERP's receivables: invoiced on the shipment confirmation, paid `payment_seconds` later.
        self.balances: dict[str, Decimal] = defaultdict(Decimal, balances or {})
        self.payment_seconds = payment_seconds
        # Replenishment: the ERP announces a delivery every `receipt_seconds`; the WMS puts it away at the pick faces.
        self.faces = faces or {}
        self.receipt_seconds = receipt_seconds
        self.receipts = 0
        self.shelf = shelf  # what a counter finds at a location
        self.stopping = threading.Event()
        self.machine_tasks: set[int] = set()  # tasks the WCS was given: the WMS leaves them to the machines
        self.floor = MachineFloor(
            send=lambda event_type, payload, attempts=8: self.send_event("wcs", event_type, payload, attempts=attempts),
            later=self.later,
            units=wcs_units,
            heartbeat_seconds=heartbeat_seconds,
            work_seconds=work_seconds / 2,
            short_rate=short_rate,
            seed=seed,
        )

    # --- scheduling -------------------------------------------------------------------
    def later(self, seconds: float, action) -> None:
        with self.agenda_lock:
            self.counter += 1
            heapq.heappush(self.agenda, (time.monotonic() + seconds, self.counter, action))
            self.agenda_lock.notify()

    def run_agenda(self) -> None:
        while not self.stopping.is_set():
            with self.agenda_lock:
                while not self.agenda or self.agenda[0][0] > time.monotonic():
                    wait = (self.agenda[0][0] - time.monotonic()) if self.agenda else 1.0
                    self.agenda_lock.wait(timeout=max(0.01, min(wait, 1.0)))
                    if self.stopping.is_set():
                        return
                _, _, action = heapq.heappop(self.agenda)
            try:
                action()
            except Exception:
                logger.exception("simulator action failed")

    # --- to the portal ----------------------------------------------------------------
    def send_order(self) -> None:
        token = self.tokens.get("erp")
        if not token or not self.customers or not self.skus:
            return
        skus = self.rng.sample(self.skus, k=min(len(self.skus), self.rng.randint(1, 3)))
        body = {
            "external_ref": f"SIM-{uuid.uuid4().hex[:12].upper()}",
            "customer": self.rng.choices(self.customers, weights=self.order_shares)[0],
            "ship_to": {
                "name": "Simulated customer",
                "lines": ["1 Harbour Road"],
                "city": "Leeds",
                "postal_code": "LS1 4AP",
                "country": "GB",
            },
            "requested_ship_date": requested_ship_date(dt.datetime.now(dt.UTC), self.same_day_until).isoformat(),
            "service_level": "standard",
            "priority": self.rng.choice([1, 2, 2, 2, 3]),
            "lines": [{"line_no": n, "sku": sku, "quantity": self.rng.randint(1, 3)} for n, sku in enumerate(skus, 1)],
        }
        response = self.client.post(
            f"{self.portal}/api/v1/orders",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        )
        self.sent["orders" if response.status_code < 300 else "orders_refused"] += 1

    def send_event(self, kind: str, event_type: str, payload: dict, *, attempts: int = 1) -> None:
        """Post one signed event; with `attempts` > 1, a timeout or a 5xx/429 is retried under the same
        event id (the portal acknowledges a repeat as a duplicate), as a partner's outbox would."""
        token, secret = self.tokens.get(kind), self.secrets.get(kind, "")
        if not token:
            return
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "type": event_type,
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "payload": payload,
            }
        ).encode()
        for attempt in range(1, attempts + 1):
            try:
                response = self.client.post(
                    f"{self.portal}/api/v1/events", content=body, headers=signed_headers(token, secret, body)
                )
            except httpx.HTTPError as error:
                if attempt == attempts:
                    raise
                logger.warning("event %s not sent (%s); retrying", event_type, error)
            else:
                if response.status_code < 300:
                    self.sent["events"] += 1
                    return
                if attempt == attempts or response.status_code not in (429, 500, 502, 503, 504):
                    self.sent["events_refused"] += 1
                    return
            time.sleep(min(2**attempt * 0.2, 5))

    # --- reactions to outbound messages ---------------------------------------------------
    def on_message(self, kind: str, message_type: str, message: dict) -> None:
        data = message.get("data") or {}
        pause = self.work_seconds * (0.5 + self.rng.random())
        if kind == "wms" and message_type == "order.released":
            self.later(pause, lambda: self.pick_order(data))
        elif kind == "tms" and message_type == "shipment.ready":
            self.later(pause, lambda: self.collect(data))
        elif kind == "erp" and message_type == "shipment.confirmed":
            self.later(pause, lambda: self.invoice(data))
        elif kind == "wms" and message_type == "receipt.expected":
            self.later(pause * 2, lambda: self.unload(data))
        elif kind == "wms" and message_type == "count.requested":
            self.later(pause, lambda: self.count(data))
        elif kind == "wcs":
            if message_type.endswith("instruction") and "task_id" in data:
                self.machine_tasks.add(int(data["task_id"]))
            self.floor.on_message(message_type, data)

    def pick_order(self, data: dict) -> None:
        for task in data.get("tasks", []):
            if int(task.get("task_id") or 0) in self.machine_tasks:
                continue
            quantity = int(task.get("quantity") or 1)
            if quantity > 1 and self.rng.random() < self.short_rate:
                self.send_event("wms", "task.short", {"task_id": task["task_id"], "done_quantity": quantity - 1})
            else:
                self.send_event("wms", "task.completed", {"task_id": task["task_id"], "done_quantity": quantity})
        self.later(
            self.work_seconds,
            lambda: self.send_event("wms", "shipment.packed", {"order": data.get("order"), "packages": 1}),
        )

    def collect(self, data: dict) -> None:
        """The carrier collects the shipment, and delivers it a while later."""
        order, shipment = data.get("order"), data.get("shipment") or ""
        self.send_event(
            "tms",
            "shipment.shipped",
            {
                "order": order,
                "shipment": shipment,
                "carrier": data.get("carrier") or "SIMCAR",
                "tracking_number": f"TRK{self.rng.randint(10**9, 10**10 - 1)}",
            },
        )
        if shipment:
            delivered = {"order": order, "shipment": shipment}
            self.later(
                self.work_seconds * 12, lambda: self.send_event("tms", "shipment.delivered", delivered, attempts=5)
            )

    def invoice(self, data: dict) -> None:
        """Invoice what was shipped, tell the portal, and book it on the customer's account until it is paid."""
        customer, order = data.get("customer"), data.get("portal_order")
        if not customer or not order:
            return
        amount = sum(
            (
                Decimal(str(line.get("unit_price") or 0)) * int(line.get("quantity") or 0)
                for line in data.get("lines", [])
            ),
            Decimal("0"),
        )
        self.sent["invoices"] += 1
        self.send_event("erp", "order.invoiced", {"order": order, "invoice": f"INV-{order}"}, attempts=5)
        self.book(customer, amount)
        self.later(self.payment_seconds, lambda: self.book(customer, -amount))

    def book(self, customer: str, amount: Decimal) -> None:
        """An invoice (positive) or a payment (negative) on the account, and the balance sent to the portal."""
        self.balances[customer] = max(Decimal("0"), self.balances[customer] + amount)
        balance = self.balances[customer].quantize(Decimal("0.01"))
        self.send_event("erp", "customer.credit", {"customer": customer, "open_balance": str(balance)}, attempts=5)

    def announce_delivery(self) -> None:
        """The ERP's purchasing: a supplier's delivery of a few SKUs to one warehouse."""
        if not self.faces:
            return
        warehouse = self.rng.choice(sorted({warehouse for warehouse, _ in self.faces}))
        skus = sorted(sku for place, sku in self.faces if place == warehouse)
        self.receipts += 1
        number = f"ASN-SIM-{uuid.uuid4().hex[:8].upper()}"
        self.send_event(
            "erp",
            "receipt.expected",
            {
                "receipt": number,
                "warehouse": warehouse,
                "supplier": self.rng.choice(["Nordic Supply", "Harbour Wholesale", "Midlands Packaging"]),
                "purchase_order": f"PO-SIM-{self.receipts:05d}",
                "kind": "asn",
                "lines": [
                    {"sku": sku, "expected_quantity": self.rng.randint(20, 60)}
                    for sku in self.rng.sample(skus, k=min(len(skus), self.rng.randint(2, 4)))
                ],
            },
            attempts=5,
        )

    def unload(self, data: dict) -> None:
        """The WMS receives what the truck brought (now and then a few short) at the pick faces, then closes it."""
        warehouse, number = data.get("warehouse"), data.get("receipt")
        for line in data.get("lines", []):
            location = self.faces.get((warehouse, line.get("sku"))) or data.get("dock")
            expected = int(line.get("expected_quantity") or 0)
            quantity = expected - self.rng.randint(1, 3) if self.rng.random() < self.short_rate else expected
            if not location or quantity <= 0:
                continue
            payload = {
                "sku": line.get("sku"),
                "warehouse": warehouse,
                "location": location,
                "quantity": quantity,
                "receipt": number,
                "receipt_line": line.get("line_no"),
            }
            self.send_event("wms", "stock.received", payload, attempts=5)
        self.later(self.work_seconds, lambda: self.send_event("wms", "receipt.closed", {"receipt": number}, attempts=5))

    def count(self, data: dict) -> None:
        """A counter goes to the location and reports what is there (now and then one unit is missing)."""
        found = self.shelf(data.get("warehouse"), data.get("location"), data.get("sku"), data.get("lot") or "")
        if found is None or not data.get("count_id"):
            return
        if found > 0 and self.rng.random() < self.short_rate:
            found -= 1
        self.send_event("wms", "count.recorded", {"count_id": data["count_id"], "counted_quantity": found}, attempts=5)

    def run_deliveries(self) -> None:
        while not self.stopping.wait(self.receipt_seconds):
            try:
                self.announce_delivery()
            except httpx.HTTPError as error:
                logger.warning("delivery not announced: %s", error)

    def run_orders(self) -> None:
        if self.order_rate <= 0:
            return
        while not self.stopping.wait(1.0 / self.order_rate):
            try:
                self.send_order()
            except httpx.HTTPError as error:
                logger.warning("order not sent: %s", error)

    def start(self) -> None:
        threading.Thread(target=self.run_agenda, name="agenda", daemon=True).start()
        self.floor.start()
        threading.Thread(target=self.run_orders, name="orders", daemon=True).start()
        if self.receipt_seconds > 0:
            threading.Thread(target=self.run_deliveries, name="deliveries", daemon=True).start()
