"""Warehouses, locations, items, stock levels, reservations, the movement ledger, receipts and counts.

Quantities are whole units of the item's unit of measure. ``StockLevel`` is the one
source of truth for on hand / reserved / quarantined, guarded by CHECK constraints;
on hand and quarantined always equal the sum of the ``StockMovement`` ledger and
reserved always equals the sum of active reservations (``manage.py check_stock``).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from inventory.querysets import StockLevelQuerySet
from portal.db import trigram_index
from portal.models import HistoryActorFields, TimeStampedModel


class Warehouse(TimeStampedModel):
    """A node of the network: a building with its own stock, time zone and carrier cutoffs."""

    code = models.SlugField(max_length=16, unique=True)
    name = models.CharField(max_length=120)
    time_zone = models.CharField(max_length=64, default="UTC")
    default_cutoff_time = models.TimeField(default="16:00", help_text="Last carrier pickup, local time")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class CarrierCutoff(models.Model):
    """The daily pickup cutoff of one carrier service at one warehouse."""

    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="carrier_cutoffs")
    carrier = models.CharField(max_length=40)
    service_level = models.CharField(max_length=40, default="standard")
    cutoff_time = models.TimeField(help_text="Local time of the warehouse")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["warehouse", "carrier", "service_level"], name="carrier_cutoff_unique")
        ]

    def __str__(self) -> str:
        return f"{self.warehouse} {self.carrier}/{self.service_level} {self.cutoff_time:%H:%M}"


class Location(models.Model):
    """A place stock sits in a warehouse: a pick face, reserve rack, dock, staging lane or quarantine cage."""

    class Kind(models.TextChoices):
        PICK = "pick", "Pick face"
        RESERVE = "reserve", "Reserve"
        DOCK = "dock", "Dock"
        STAGING = "staging", "Staging"
        QUARANTINE = "quarantine", "Quarantine"

    ALLOCATABLE_KINDS = (Kind.PICK, Kind.RESERVE)

    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="locations")
    code = models.CharField(max_length=32)
    zone = models.CharField(max_length=32, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PICK)
    pick_sequence = models.PositiveIntegerField(default=0, help_text="Walk order: lower is picked first")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["warehouse", "pick_sequence", "code"]
        constraints = [models.UniqueConstraint(fields=["warehouse", "code"], name="location_code_unique")]

    def __str__(self) -> str:
        return f"{self.warehouse_id and self.warehouse.code}/{self.code}"


class Item(TimeStampedModel):
    """A stock-keeping unit."""

    sku = models.CharField(max_length=40, unique=True)
    description = models.CharField(max_length=200)
    unit_of_measure = models.CharField(max_length=12, default="EA")
    lot_tracked = models.BooleanField(default=False)
    unit_value = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    is_active = models.BooleanField(default=True)
    substitutes = models.ManyToManyField(
        "self", through="ItemSubstitute", symmetrical=False, related_name="substitute_for", blank=True
    )

    class Meta:
        ordering = ["sku"]
        # The stock pages' and the top bar's search: any part of the SKU or description.
        indexes = [trigram_index(Upper("sku"), Upper("description"), name="item_search_trgm")]

    def __str__(self) -> str:
        return self.sku


class ItemSubstitute(models.Model):
    """An item that may ship in place of another, ranked (1 is preferred)."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="substitute_links")
    substitute = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["item", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["item", "substitute"], name="item_substitute_unique"),
            models.CheckConstraint(condition=~Q(item=F("substitute")), name="item_substitute_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} → {self.substitute_id} (#{self.rank})"


class Lot(models.Model):
    """A production lot of a lot-tracked item, with its expiry (FEFO allocates the earliest first)."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="lots")
    code = models.CharField(max_length=40)
    expires_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["item", "expires_on", "code"]
        constraints = [models.UniqueConstraint(fields=["item", "code"], name="lot_code_unique")]

    def __str__(self) -> str:
        return f"{self.code}"


class StockLevel(models.Model):
    """Quantities of one item (and lot) at one location. Changed only by inventory services."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="stock_levels")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_levels")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, null=True, blank=True, related_name="stock_levels")
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    quarantined = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StockLevelQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "location", "lot"], name="stock_level_unique", nulls_distinct=False
            ),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_not_negative"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_reserved_not_negative"),
            models.CheckConstraint(condition=Q(quarantined__gte=0), name="stock_quarantined_not_negative"),
            models.CheckConstraint(
                condition=Q(on_hand__gte=F("reserved") + F("quarantined")),
                name="stock_reserved_quarantined_within_on_hand",
            ),
        ]
        indexes = [models.Index(fields=["item", "location"], name="stock_item_location_idx")]

    def __str__(self) -> str:
        return f"{self.item_id}@{self.location_id}: {self.on_hand}/{self.reserved}/{self.quarantined}"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.quarantined


class Reservation(ConcurrentTransitionMixin, TimeStampedModel):
    """Stock promised to one order line at one stock row (location and lot)."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        RESERVED = "reserved", "Reserved"
        PICKED = "picked", "Picked"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    ACTIVE = (Status.RESERVED,)

    # No plain index on stock_level: every query of a row's reservations asks for the active ones, which the
    # partial index below serves; a second, full index would only cost every reservation insert.
    stock_level = models.ForeignKey(StockLevel, on_delete=models.PROTECT, related_name="reservations", db_index=False)
    # Item and warehouse are copies of the stock row's (written from it by the reserving statement), kept for
    # filtering. The database constraint is on stock_level; constraints on these two would make every
    # reservation share-lock the same warehouse row, a hot spot under concurrent allocation.
    item = models.ForeignKey(
        Item, on_delete=models.PROTECT, related_name="reservations", db_constraint=False, db_index=False
    )
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.PROTECT, related_name="reservations", db_constraint=False, db_index=False
    )
    # The orchestration order line this stock is promised to (an id, so inventory depends on no other app).
    order_line_id = models.BigIntegerField(db_index=True)
    order_number = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField()
    picked_quantity = models.PositiveIntegerField(default=0)
    status = FSMField(default=Status.REQUESTED, choices=Status.choices, protected=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    # History rows are read per reservation (by id) and by date; other indexes would only slow every reservation.
    history = HistoricalRecords(
        bases=[HistoryActorFields],
        no_db_index=["stock_level", "item", "warehouse", "order_line_id", "order_number", "status"],
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_quantity_positive"),
            models.CheckConstraint(
                condition=Q(picked_quantity__lte=F("quantity")), name="reservation_picked_within_quantity"
            ),
        ]
        # Indexes are kept to what is queried: active reservations per stock row (checks, releases), an
        # order's reservations, and the expiry job's due reservations. Each one costs every reservation insert.
        indexes = [
            models.Index(fields=["stock_level"], name="reservation_active_idx", condition=Q(status="reserved")),
            models.Index(fields=["order_number"], name="reservation_order_number_idx"),
            models.Index(
                fields=["expires_at"],
                name="reservation_expiry_due_idx",
                condition=Q(status="reserved", expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"R{self.pk} {self.order_number} {self.quantity}×{self.item_id}"

    @transition(field=status, source=Status.REQUESTED, target=Status.RESERVED)
    def confirm(self):
        """The stock row's reserved figure was raised by this quantity."""

    @transition(field=status, source=Status.RESERVED, target=Status.PICKED)
    def pick(self, *, picked: int):
        self.picked_quantity = picked
        self.closed_at = timezone.now()

    @transition(field=status, source=[Status.REQUESTED, Status.RESERVED], target=Status.RELEASED)
    def release(self):
        self.closed_at = timezone.now()

    @transition(field=status, source=Status.RESERVED, target=Status.EXPIRED)
    def expire(self):
        self.closed_at = timezone.now()


class StockMovement(models.Model):
    """One append-only line of the stock ledger. Rows are never updated or deleted (a trigger refuses it)."""

    class Kind(models.TextChoices):
        RECEIPT = "receipt", "Receipt"
        PUTAWAY = "putaway", "Putaway"
        PICK = "pick", "Pick"
        ADJUSTMENT = "adjustment", "Adjustment"
        TRANSFER = "transfer", "Transfer"
        QUARANTINE = "quarantine", "Quarantine"
        RELEASE = "release", "Release from quarantine"
        COUNT_CORRECTION = "count_correction", "Count correction"

    stock_level = models.ForeignKey(StockLevel, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    on_hand_delta = models.IntegerField(default=0)
    quarantined_delta = models.IntegerField(default=0)
    actor = models.CharField(max_length=160)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    source_type = models.CharField(max_length=40, blank=True, default="")
    source_ref = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(on_hand_delta=0) | ~Q(quarantined_delta=0), name="movement_changes_something"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.on_hand_delta:+d}/{self.quarantined_delta:+d} @{self.stock_level_id}"


class VariancePolicy(models.Model):
    """When a receiving or count difference is big enough to become an exception case."""

    warehouse = models.OneToOneField(
        Warehouse, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: the network default"
    )
    receiving_tolerance_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("2.00"))
    receiving_tolerance_units = models.PositiveIntegerField(default=0)
    count_tolerance_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("1.00"))
    count_tolerance_units = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "variance policies"
        constraints = [
            models.UniqueConstraint(
                fields=["warehouse"], name="variance_policy_one_per_warehouse", nulls_distinct=False
            )
        ]

    def __str__(self) -> str:
        return f"Variance policy {self.warehouse or 'default'}"

    def exceeds(self, *, expected: int, actual: int, kind: str) -> bool:
        """True when |actual − expected| is beyond both the unit and the percent tolerance."""
        difference = abs(actual - expected)
        if kind == "receiving":
            percent, units = self.receiving_tolerance_percent, self.receiving_tolerance_units
        else:
            percent, units = self.count_tolerance_percent, self.count_tolerance_units
        if difference <= units:
            return False
        base = max(expected, 1)
        return Decimal(difference * 100) / Decimal(base) > percent


class Receipt(ConcurrentTransitionMixin, TimeStampedModel):
    """Inbound goods against an advance shipping notice or a purchase order."""

    class Status(models.TextChoices):
        EXPECTED = "expected", "Expected"
        RECEIVING = "receiving", "Receiving"
        CLOSED = "closed", "Closed"
        CANCELLED = "cancelled", "Cancelled"

    class DocumentKind(models.TextChoices):
        ASN = "asn", "Advance shipping notice"
        PO = "po", "Purchase order"

    number = models.CharField(max_length=40, unique=True)
    document_kind = models.CharField(max_length=4, choices=DocumentKind.choices, default=DocumentKind.ASN)
    purchase_order = models.CharField(max_length=40, blank=True, default="")
    supplier = models.CharField(max_length=120)
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="receipts")
    dock = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    status = FSMField(default=Status.EXPECTED, choices=Status.choices, protected=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    invoice_on_hold = models.BooleanField(default=False)

    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        # The top bar's search finds a receipt by the purchase order it delivers against.
        indexes = [models.Index(fields=["purchase_order"], name="receipt_purchase_order_idx")]

    def __str__(self) -> str:
        return self.number

    @transition(field=status, source=[Status.EXPECTED, Status.RECEIVING], target=Status.RECEIVING)
    def start_receiving(self):
        pass

    @transition(field=status, source=[Status.EXPECTED, Status.RECEIVING], target=Status.CLOSED)
    def close(self):
        self.closed_at = timezone.now()

    @transition(field=status, source=Status.EXPECTED, target=Status.CANCELLED)
    def cancel(self):
        self.closed_at = timezone.now()


class ReceiptLine(models.Model):
    """Expected versus received quantity of one item on a receipt."""

    receipt = models.ForeignKey(Receipt, on_delete=models.CASCADE, related_name="lines")
    line_no = models.PositiveIntegerField()
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    expected_quantity = models.PositiveIntegerField()
    received_quantity = models.PositiveIntegerField(default=0)
    variance_accepted = models.BooleanField(default=False)

    class Meta:
        ordering = ["receipt", "line_no"]
        constraints = [models.UniqueConstraint(fields=["receipt", "line_no"], name="receipt_line_unique")]

    def __str__(self) -> str:
        return f"{self.receipt_id}#{self.line_no}"

    @property
    def variance(self) -> int:
        return self.received_quantity - self.expected_quantity

    @property
    def still_to_come(self) -> int:
        """Units expected and not received yet (none once more than expected arrived)."""
        return max(0, self.expected_quantity - self.received_quantity)


class CycleCount(ConcurrentTransitionMixin, TimeStampedModel):
    """A count of one item at one location: expected (system) versus counted (physical)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COUNTED = "counted", "Counted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    stock_level = models.ForeignKey(StockLevel, on_delete=models.PROTECT, related_name="counts")
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True, db_index=True)
    expected_quantity = models.IntegerField(null=True, blank=True)
    counted_quantity = models.IntegerField(null=True, blank=True)
    counted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    counted_by_actor = models.CharField(max_length=160, blank=True, default="")
    counted_at = models.DateTimeField(null=True, blank=True)
    decided_by_actor = models.CharField(max_length=160, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    requested_reason = models.TextField(blank=True, default="")

    history = HistoricalRecords(bases=[HistoryActorFields])

    def __str__(self) -> str:
        return f"Count {self.pk} of stock {self.stock_level_id}"

    @property
    def variance(self) -> int | None:
        if self.counted_quantity is None or self.expected_quantity is None:
            return None
        return self.counted_quantity - self.expected_quantity

    @transition(field=status, source=Status.OPEN, target=Status.COUNTED)
    def record(self, *, expected: int, counted: int, user=None, actor_label: str = ""):
        self.expected_quantity = expected
        self.counted_quantity = counted
        self.counted_by = user
        self.counted_by_actor = actor_label
        self.counted_at = timezone.now()

    @transition(field=status, source=Status.COUNTED, target=Status.APPROVED)
    def approve(self, *, actor_label: str):
        self.decided_by_actor = actor_label
        self.decided_at = timezone.now()

    @transition(field=status, source=[Status.OPEN, Status.COUNTED], target=Status.REJECTED)
    def reject(self, *, actor_label: str):
        self.decided_by_actor = actor_label
        self.decided_at = timezone.now()
