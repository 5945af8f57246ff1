"""Customers, orders and lines, release policy, warehouse tasks and shipments: the order-to-ship flow."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from orchestration.querysets import OrderQuerySet, TaskQuerySet
from portal.db import trigram_index
from portal.models import HistoryActorFields, TimeStampedModel


class Customer(TimeStampedModel):
    """A customer account with its credit standing and shipping rules."""

    class CreditStatus(models.TextChoices):
        GOOD = "good", "Good"
        WATCH = "watch", "Watch"
        BLOCKED = "blocked", "Blocked"

    class ServiceTier(models.TextChoices):
        STANDARD = "standard", "Standard"
        PRIORITY = "priority", "Priority"
        KEY_ACCOUNT = "key_account", "Key account"

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=160)
    credit_limit = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    open_balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    credit_status = models.CharField(max_length=10, choices=CreditStatus.choices, default=CreditStatus.GOOD)
    allows_split_shipment = models.BooleanField(default=True)
    allows_substitution = models.BooleanField(default=False)
    service_tier = models.CharField(max_length=12, choices=ServiceTier.choices, default=ServiceTier.STANDARD)
    default_warehouse = models.ForeignKey(
        "inventory.Warehouse", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["code"]
        indexes = [trigram_index(Upper("code"), Upper("name"), name="customer_search_trgm")]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ReleasePolicy(models.Model):
    """When an allocated order may be released to the warehouse. One per warehouse, or the network default."""

    name = models.CharField(max_length=80)
    warehouse = models.OneToOneField(
        "inventory.Warehouse", null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: network default"
    )
    require_credit_ok = models.BooleanField(default=True)
    allow_partial_release = models.BooleanField(
        default=True, help_text="Release partly allocated orders when the customer accepts split shipments"
    )
    ship_window_days = models.PositiveSmallIntegerField(
        default=2, help_text="Release only orders whose requested ship date is at most this many days ahead"
    )
    cutoff_buffer_minutes = models.PositiveSmallIntegerField(
        default=30, help_text="Stop releasing for today's pickup this long before the carrier cutoff"
    )
    auto_release = models.BooleanField(default=True, help_text="Release as soon as the policy allows")
    credit_hold_over_limit = models.BooleanField(
        default=True, help_text="Hold orders that take the customer over limit"
    )
    release_credit_holds_when_clear = models.BooleanField(
        default=True,
        help_text="When the customer's credit changes (a payment, a higher limit, a block lifted), let their "
        "credit-held orders that fit go ahead without waiting for finance",
    )

    class Meta:
        verbose_name_plural = "release policies"
        constraints = [
            models.UniqueConstraint(fields=["warehouse"], name="release_policy_one_per_warehouse", nulls_distinct=False)
        ]

    def __str__(self) -> str:
        return self.name


class Order(ConcurrentTransitionMixin, TimeStampedModel):
    """A customer order and its process state, from receipt to close."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        VALIDATED = "validated", "Validated"
        REJECTED = "rejected", "Rejected"
        CREDIT_HOLD = "credit_hold", "Credit hold"
        ALLOCATED = "allocated", "Allocated"
        PARTIALLY_ALLOCATED = "partially_allocated", "Partially allocated"
        BACKORDERED = "backordered", "Backordered"
        RELEASED = "released", "Released to warehouse"
        PICKING = "picking", "Picking"
        PACKED = "packed", "Packed"
        SHIPPED = "shipped", "Shipped"
        INVOICED = "invoiced", "Invoiced"
        CLOSED = "closed", "Closed"
        ON_HOLD = "on_hold", "On hold"
        CANCELLED = "cancelled", "Cancelled"

    ALLOCATION_STATES = [Status.ALLOCATED, Status.PARTIALLY_ALLOCATED, Status.BACKORDERED]
    CANCELLABLE = [
        Status.RECEIVED,
        Status.VALIDATED,
        Status.CREDIT_HOLD,
        *ALLOCATION_STATES,
        Status.RELEASED,
        Status.PICKING,
        Status.ON_HOLD,
    ]
    HOLDABLE = [Status.VALIDATED, *ALLOCATION_STATES]
    # Orders whose value counts against the customer's credit until invoiced (with the open balance).
    CREDIT_EXPOSURE_STATES = [*ALLOCATION_STATES, Status.RELEASED, Status.PICKING, Status.PACKED, Status.SHIPPED]
    OPEN_STATES = [
        Status.RECEIVED,
        Status.VALIDATED,
        Status.CREDIT_HOLD,
        *ALLOCATION_STATES,
        Status.RELEASED,
        Status.PICKING,
        Status.PACKED,
        Status.ON_HOLD,
    ]

    class Priority(models.IntegerChoices):
        LOW = 1, "Low"
        NORMAL = 2, "Normal"
        HIGH = 3, "High"
        URGENT = 4, "Urgent"

    number = models.CharField(max_length=40, unique=True)
    source = models.CharField(max_length=32, default="portal", help_text="Partner code or 'portal'")
    external_ref = models.CharField(max_length=64)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    warehouse = models.ForeignKey("inventory.Warehouse", on_delete=models.PROTECT, related_name="orders")
    status = FSMField(default=Status.RECEIVED, choices=Status.choices, protected=True, db_index=True)
    held_from = models.CharField(max_length=24, blank=True, default="")
    hold_reason = models.TextField(blank=True, default="")
    rejection_reason = models.TextField(blank=True, default="")
    ship_to_name = models.CharField(max_length=160, blank=True, default="")
    ship_to_lines = models.TextField(blank=True, default="")
    ship_to_city = models.CharField(max_length=80, blank=True, default="")
    ship_to_postal_code = models.CharField(max_length=20, blank=True, default="")
    ship_to_country = models.CharField(max_length=2, blank=True, default="")
    requested_ship_date = models.DateField(null=True, blank=True)
    service_level = models.CharField(max_length=40, default="standard")
    carrier = models.CharField(max_length=40, blank=True, default="")
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    total_value = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    risk_score = models.FloatField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    cutoff_warned_on = models.DateField(
        null=True,
        blank=True,
        help_text="The warehouse day the cutoff watch last warned that this order misses its pickup",
    )

    objects = OrderQuerySet.as_manager()
    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["source", "external_ref"], name="order_external_ref_unique")]
        indexes = [
            models.Index(fields=["status", "requested_ship_date"], name="order_status_ship_idx"),
            # The top bar's search finds an order by the partner's reference whichever partner sent it.
            models.Index(fields=["external_ref"], name="order_external_ref_idx"),
            # The order list's search: any part of the number or the partner's reference.
            trigram_index(Upper("number"), Upper("external_ref"), name="order_search_trgm"),
        ]
        permissions = [
            ("release_credit_hold", "Can release an order from credit hold"),
            ("hold_order", "Can put orders on hold and release holds"),
        ]

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("orchestration:order-detail", args=[self.number])

    @property
    def ship_to_complete(self) -> bool:
        return all(
            [self.ship_to_name, self.ship_to_lines, self.ship_to_city, self.ship_to_postal_code, self.ship_to_country]
        )

    # Transitions: pure field changes; the services lock, check policy, save and record.

    @transition(field=status, source=Status.RECEIVED, target=Status.VALIDATED)
    def validate(self):
        pass

    @transition(field=status, source=Status.RECEIVED, target=Status.REJECTED)
    def reject(self, *, note: str):
        self.rejection_reason = note
        self.closed_at = timezone.now()

    @transition(field=status, source=Status.VALIDATED, target=Status.CREDIT_HOLD)
    def hold_for_credit(self, *, note: str):
        self.hold_reason = note

    @transition(field=status, source=Status.CREDIT_HOLD, target=Status.VALIDATED)
    def release_credit_hold(self):
        self.hold_reason = ""

    @transition(field=status, source=[Status.VALIDATED, *ALLOCATION_STATES], target=Status.ALLOCATED)
    def mark_allocated(self):
        pass

    @transition(field=status, source=[Status.VALIDATED, *ALLOCATION_STATES], target=Status.PARTIALLY_ALLOCATED)
    def mark_partially_allocated(self):
        pass

    @transition(field=status, source=[Status.VALIDATED, *ALLOCATION_STATES], target=Status.BACKORDERED)
    def mark_backordered(self):
        pass

    @transition(field=status, source=[Status.ALLOCATED, Status.PARTIALLY_ALLOCATED], target=Status.RELEASED)
    def release(self):
        self.released_at = timezone.now()

    @transition(field=status, source=[Status.RELEASED, Status.PICKING], target=Status.PICKING)
    def start_picking(self):
        pass

    @transition(field=status, source=[Status.RELEASED, Status.PICKING], target=Status.PACKED)
    def mark_packed(self):
        pass

    @transition(field=status, source=Status.PACKED, target=Status.SHIPPED)
    def mark_shipped(self):
        self.shipped_at = timezone.now()

    @transition(field=status, source=Status.SHIPPED, target=Status.INVOICED)
    def mark_invoiced(self):
        pass

    @transition(field=status, source=Status.INVOICED, target=Status.CLOSED)
    def close(self):
        self.closed_at = timezone.now()

    @transition(field=status, source=CANCELLABLE, target=Status.CANCELLED)
    def cancel(self, *, note: str):
        self.hold_reason = ""
        self.rejection_reason = note
        self.closed_at = timezone.now()

    @transition(field=status, source=HOLDABLE, target=Status.ON_HOLD)
    def hold(self, *, note: str):
        self.held_from = self.status
        self.hold_reason = note

    @transition(field=status, source=Status.ON_HOLD, target=Status.VALIDATED)
    def unhold(self):
        self.held_from = ""
        self.hold_reason = ""


class OrderLine(models.Model):
    """One SKU and quantity of an order, with what was allocated, picked and shipped of it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ALLOCATED = "allocated", "Allocated"
        PARTIAL = "partial", "Partly allocated"
        BACKORDERED = "backordered", "Backordered"
        PICKED = "picked", "Picked"
        SHIPPED = "shipped", "Shipped"
        CANCELLED = "cancelled", "Cancelled"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_no = models.PositiveIntegerField()
    item = models.ForeignKey("inventory.Item", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    allocated_quantity = models.PositiveIntegerField(default=0)
    picked_quantity = models.PositiveIntegerField(default=0)
    shipped_quantity = models.PositiveIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    substitute_for = models.ForeignKey(
        "inventory.Item",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The item originally ordered, when this line ships a substitute",
    )

    class Meta:
        ordering = ["order", "line_no"]
        constraints = [
            models.UniqueConstraint(fields=["order", "line_no"], name="order_line_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_quantity_positive"),
            models.CheckConstraint(
                condition=Q(allocated_quantity__lte=F("quantity")), name="order_line_allocated_le_qty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}#{self.line_no}"

    @property
    def open_quantity(self) -> int:
        return self.quantity - self.allocated_quantity - self.shipped_quantity

    @property
    def missing_quantity(self) -> int:
        """Units neither reserved, picked nor shipped: what a short pick left waiting for a decision."""
        return self.quantity - self.allocated_quantity - self.picked_quantity - self.shipped_quantity

    @property
    def value(self) -> Decimal:
        return self.unit_price * self.quantity


class Task(ConcurrentTransitionMixin, TimeStampedModel):
    """Warehouse work, done by a person or handed to a machine through the WCS."""

    class Kind(models.TextChoices):
        PICK = "pick", "Pick"
        PACK = "pack", "Pack"
        PUTAWAY = "putaway", "Putaway"
        REPLENISH = "replenish", "Replenish"
        COUNT = "count", "Count"
        MOVE = "move", "Move"

    class Status(models.TextChoices):
        CREATED = "created", "Created"
        DISPATCHED = "dispatched", "Dispatched"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        SHORT = "short", "Short"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Performer(models.TextChoices):
        PERSON = "person", "Person"
        MACHINE = "machine", "Machine (WCS)"

    OPEN_STATES = [Status.CREATED, Status.DISPATCHED, Status.ACKNOWLEDGED, Status.IN_PROGRESS]
    DONE_STATES = [Status.COMPLETED, Status.SHORT, Status.FAILED, Status.CANCELLED]

    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = FSMField(default=Status.CREATED, choices=Status.choices, protected=True, db_index=True)
    warehouse = models.ForeignKey("inventory.Warehouse", on_delete=models.PROTECT, related_name="tasks")
    zone = models.CharField(max_length=32, blank=True, default="")
    location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    item = models.ForeignKey("inventory.Item", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=0)
    done_quantity = models.PositiveIntegerField(default=0)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="tasks")
    order_line = models.ForeignKey(OrderLine, null=True, blank=True, on_delete=models.PROTECT, related_name="tasks")
    reservation = models.ForeignKey(
        "inventory.Reservation", null=True, blank=True, on_delete=models.PROTECT, related_name="tasks"
    )
    performer = models.CharField(max_length=8, choices=Performer.choices, default=Performer.PERSON)
    equipment_code = models.CharField(max_length=40, blank=True, default="")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    priority = models.PositiveSmallIntegerField(default=2)
    # Machine hand-offs are leases: an instruction counter and an acknowledgement deadline.
    instruction_seq = models.PositiveIntegerField(default=0)
    ack_deadline = models.DateTimeField(null=True, blank=True)
    dispatch_attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome_note = models.TextField(blank=True, default="")

    objects = TaskQuerySet.as_manager()
    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [
            models.Index(fields=["warehouse", "zone", "status"], name="task_zone_status_idx"),
            # The floor's recent throughput: work finished per warehouse in the last hours.
            models.Index(
                fields=["warehouse", "finished_at"], name="task_finished_idx", condition=Q(finished_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"T{self.pk} {self.kind}"

    @transition(field=status, source=[Status.CREATED, Status.DISPATCHED, Status.ACKNOWLEDGED], target=Status.DISPATCHED)
    def dispatch(self, *, performer: str, equipment_code: str = "", ack_deadline=None):
        self.performer = performer
        self.equipment_code = equipment_code
        self.ack_deadline = ack_deadline
        self.instruction_seq += 1
        self.dispatch_attempts += 1

    @transition(field=status, source=Status.DISPATCHED, target=Status.ACKNOWLEDGED)
    def acknowledge(self):
        self.ack_deadline = None

    @transition(
        field=status, source=[Status.CREATED, Status.DISPATCHED, Status.ACKNOWLEDGED], target=Status.IN_PROGRESS
    )
    def start(self):
        self.ack_deadline = None
        self.started_at = timezone.now()

    @transition(
        field=status, source=[Status.DISPATCHED, Status.ACKNOWLEDGED, Status.IN_PROGRESS], target=Status.COMPLETED
    )
    def complete(self, *, done_quantity: int):
        self.done_quantity = done_quantity
        self.finished_at = timezone.now()

    @transition(field=status, source=[Status.DISPATCHED, Status.ACKNOWLEDGED, Status.IN_PROGRESS], target=Status.SHORT)
    def short(self, *, done_quantity: int, note: str):
        self.done_quantity = done_quantity
        self.outcome_note = note
        self.finished_at = timezone.now()

    @transition(field=status, source=OPEN_STATES, target=Status.FAILED)
    def fail(self, *, note: str):
        self.outcome_note = note
        self.finished_at = timezone.now()

    @transition(field=status, source=OPEN_STATES, target=Status.CANCELLED)
    def cancel(self, *, note: str):
        self.outcome_note = note
        self.finished_at = timezone.now()

    @transition(field=status, source=[Status.DISPATCHED, Status.ACKNOWLEDGED], target=Status.CREATED)
    def fall_back_to_manual(self, *, note: str):
        """An unacknowledged or faulted machine hand-off becomes manual work again."""
        self.performer = self.Performer.PERSON
        self.equipment_code = ""
        self.ack_deadline = None
        self.outcome_note = note
        self.instruction_seq += 1


class Shipment(ConcurrentTransitionMixin, TimeStampedModel):
    """What leaves the dock for an order: packed → shipped → confirmed by the carrier."""

    class Status(models.TextChoices):
        PACKED = "packed", "Packed"
        SHIPPED = "shipped", "Shipped"
        CONFIRMED = "confirmed", "Delivered"  # the carrier confirmed the delivery

    number = models.CharField(max_length=40, unique=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="shipments")
    warehouse = models.ForeignKey("inventory.Warehouse", on_delete=models.PROTECT, related_name="shipments")
    status = FSMField(default=Status.PACKED, choices=Status.choices, protected=True, db_index=True)
    carrier = models.CharField(max_length=40, blank=True, default="")
    service_level = models.CharField(max_length=40, blank=True, default="")
    tracking_number = models.CharField(max_length=80, blank=True, default="")
    packages = models.PositiveSmallIntegerField(default=1)
    shipped_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(bases=[HistoryActorFields])

    def __str__(self) -> str:
        return self.number

    @transition(field=status, source=Status.PACKED, target=Status.SHIPPED)
    def ship(self, *, carrier: str, tracking_number: str):
        self.carrier = carrier
        self.tracking_number = tracking_number
        self.shipped_at = timezone.now()

    @transition(field=status, source=Status.SHIPPED, target=Status.CONFIRMED)
    def confirm(self):
        self.confirmed_at = timezone.now()


class ShipmentLine(models.Model):
    """Units of one order line in a shipment."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey(OrderLine, on_delete=models.PROTECT, related_name="shipment_lines")
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="shipment_line_quantity_positive")]

    def __str__(self) -> str:
        return f"{self.shipment_id}: {self.quantity}×{self.order_line_id}"
