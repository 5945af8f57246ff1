"""Equipment and machine hand-offs, the rules engine, and policy-bounded risk scoring."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from automation.querysets import EquipmentQuerySet, HandOffQuerySet, RuleQuerySet
from portal.models import HistoryActorFields, TimeStampedModel

# --- equipment ----------------------------------------------------------------------------


class Equipment(TimeStampedModel):
    """A machine (or fleet) behind the WCS that can take work instructions in a zone of a warehouse."""

    class Kind(models.TextChoices):
        AMR_FLEET = "amr_fleet", "AMR fleet"
        SORTER = "sorter", "Sorter"
        CONVEYOR = "conveyor", "Conveyor"
        ASRS = "asrs", "AS/RS"
        PICK_TO_LIGHT = "pick_to_light", "Pick-to-light"

    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        DEGRADED = "degraded", "Degraded"
        OFFLINE = "offline", "Offline"
        FAULTED = "faulted", "Faulted"
        MAINTENANCE = "maintenance", "Maintenance"

    # Work goes only to equipment in these states; degraded equipment is chosen last.
    DISPATCHABLE = [Status.ONLINE, Status.DEGRADED]
    # Equipment in these states is expected to report heartbeats.
    MONITORED = [Status.ONLINE, Status.DEGRADED]

    code = models.SlugField(max_length=40, unique=True, help_text="The WCS's name for the unit")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    warehouse = models.ForeignKey("inventory.Warehouse", on_delete=models.PROTECT, related_name="equipment")
    zone = models.CharField(max_length=32, help_text="The zone the unit stands in (the board groups by it)")
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text='Work it can take: {"task_kinds": ["pick", "move"], "zones": ["AMR"]}. '
        "Empty lists: the unit is monitored but takes no work instructions.",
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ONLINE, db_index=True)
    status_reason = models.TextField(blank=True, default="")
    status_changed_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    heartbeat_timeout_seconds = models.PositiveIntegerField(default=60)
    ack_timeout_seconds = models.PositiveIntegerField(default=30)
    max_dispatch_attempts = models.PositiveSmallIntegerField(
        default=3, help_text="Instructions sent for one task before it falls back to manual work"
    )
    max_tasks_in_flight = models.PositiveIntegerField(default=50, help_text="Open instructions the unit may hold")
    progress_timeout_seconds = models.PositiveIntegerField(
        default=1800,
        help_text="A task in progress on the unit this long without a completion or short raises an automation-fault "
        "case for the supervisor (the goods may be stuck in the machine)",
    )
    is_active = models.BooleanField(default=True)

    objects = EquipmentQuerySet.as_manager()
    history = HistoricalRecords(bases=[HistoryActorFields], excluded_fields=["last_heartbeat_at", "updated_at"])

    class Meta:
        ordering = ["warehouse", "zone", "code"]
        verbose_name_plural = "equipment"
        constraints = [
            models.CheckConstraint(condition=Q(max_dispatch_attempts__gte=1), name="equipment_attempts_at_least_one"),
            models.CheckConstraint(condition=Q(ack_timeout_seconds__gte=1), name="equipment_ack_timeout_positive"),
            models.CheckConstraint(
                condition=Q(progress_timeout_seconds__gte=1), name="equipment_progress_timeout_positive"
            ),
            models.CheckConstraint(
                condition=Q(heartbeat_timeout_seconds__gte=1), name="equipment_heartbeat_timeout_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self):
        capabilities = self.capabilities or {}
        if not isinstance(capabilities, dict):
            raise ValidationError({"capabilities": 'Expected an object like {"task_kinds": [...], "zones": [...]}.'})
        from orchestration.models import Task

        errors = []
        unknown_keys = set(capabilities) - {"task_kinds", "zones"}
        if unknown_keys:
            errors.append(f"Unknown keys: {', '.join(sorted(unknown_keys))} (use task_kinds and zones).")
        kinds = capabilities.get("task_kinds", [])
        zones = capabilities.get("zones", [])
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            errors.append("task_kinds must be a list of task kinds.")
        elif set(kinds) - set(Task.Kind.values):
            errors.append(
                f"Unknown task kinds: {', '.join(sorted(set(kinds) - set(Task.Kind.values)))}; "
                f"choose from {', '.join(Task.Kind.values)}."
            )
        if not isinstance(zones, list) or not all(isinstance(z, str) and z for z in zones):
            errors.append("zones must be a list of zone codes.")
        if errors:
            raise ValidationError({"capabilities": errors})

    @property
    def task_kinds(self) -> list[str]:
        return list((self.capabilities or {}).get("task_kinds", []))

    @property
    def served_zones(self) -> list[str]:
        return list((self.capabilities or {}).get("zones", []))

    def can_serve(self, *, kind: str, zone: str) -> bool:
        return kind in self.task_kinds and zone in self.served_zones

    @property
    def is_dispatchable(self) -> bool:
        return self.is_active and self.status in self.DISPATCHABLE


class EquipmentFault(models.Model):
    """One stoppage of a unit (jam, fault, lost heartbeat) from the moment it was seen until it cleared."""

    class Kind(models.TextChoices):
        JAM = "jam", "Jam"
        FAULT = "fault", "Fault"
        OFFLINE = "offline", "Heartbeat lost"

    equipment = models.ForeignKey(Equipment, on_delete=models.CASCADE, related_name="faults")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    code = models.CharField(max_length=60, blank=True, default="", help_text="The WCS's fault code")
    message = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    affected_tasks = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Tasks the unit held when it stopped, and where each went",
    )
    order_numbers = models.JSONField(default=list, blank=True)
    case_id = models.BigIntegerField(null=True, blank=True, help_text="The automation-fault case raised for it")
    opened_by = models.CharField(max_length=160, blank=True, default="")
    cleared_by = models.CharField(max_length=160, blank=True, default="")

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["equipment"], name="fault_open_idx", condition=Q(cleared_at__isnull=True))]

    def __str__(self) -> str:
        return f"{self.equipment_id} {self.kind} @ {self.opened_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


class HandOff(models.Model):
    """One work instruction sent to the WCS for a task: a lease with an acknowledgement deadline."""

    class Status(models.TextChoices):
        SENT = "sent", "Sent, awaiting acknowledgement"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        SHORT = "short", "Short"
        TIMED_OUT = "timed_out", "Not acknowledged in time"
        REROUTED = "rerouted", "Re-routed (unit stopped)"
        FELL_BACK = "fell_back", "Fell back to manual"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    OPEN = [Status.SENT, Status.ACKNOWLEDGED, Status.IN_PROGRESS]

    task = models.ForeignKey("orchestration.Task", on_delete=models.CASCADE, related_name="handoffs")
    equipment = models.ForeignKey(Equipment, on_delete=models.PROTECT, related_name="handoffs")
    instruction_seq = models.PositiveIntegerField()
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.SENT, db_index=True)
    sent_at = models.DateTimeField(default=timezone.now)
    ack_deadline = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")
    message_id = models.BigIntegerField(null=True, blank=True, help_text="The outbound WCS message")
    order_number = models.CharField(max_length=40, blank=True, default="", db_index=True)

    objects = HandOffQuerySet.as_manager()

    class Meta:
        ordering = ["-sent_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["task", "instruction_seq"], name="handoff_once_per_instruction")]
        indexes = [models.Index(fields=["equipment", "status"], name="handoff_equipment_status_idx")]

    def __str__(self) -> str:
        return f"T{self.task_id}#{self.instruction_seq} → {self.equipment_id} {self.status}"


# --- rules --------------------------------------------------------------------------------


class Rule(TimeStampedModel):
    """An admin-configured rule: when <trigger> and <conditions>, do (or recommend) <actions>."""

    class Mode(models.TextChoices):
        ADVISORY = "advisory", "Advisory (recommend only)"
        AUTOMATIC = "automatic", "Automatic (execute)"

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, default="")
    trigger = models.CharField(max_length=60, db_index=True)
    conditions = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text='{"all": [{"field": "value", "op": "gt", "value": 5000}, {"any": [...]}]} — empty matches every event',
    )
    actions = models.JSONField(
        default=list,
        encoder=DjangoJSONEncoder,
        help_text='[{"type": "set_priority", "priority": 4}, {"type": "notify_role", ...}]',
    )
    order = models.PositiveIntegerField(default=100, help_text="Lower runs first")
    enabled = models.BooleanField(default=False)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ADVISORY)
    version = models.PositiveIntegerField(default=0, editable=False)

    objects = RuleQuerySet.as_manager()
    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["trigger", "order", "id"]
        indexes = [models.Index(fields=["trigger", "order"], name="rule_enabled_idx", condition=Q(enabled=True))]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"

    def save(self, *args, **kwargs):
        # The version is a pin, not business logic: every stored edit gets a new number so a
        # firing always names the exact rule text that decided it, whatever path saved it.
        self.version = (self.version or 0) + 1
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = sorted({*update_fields, "version", "updated_at"})
        super().save(*args, **kwargs)

    def clean(self):
        from automation import rules

        rules.validate_rule(trigger=self.trigger, conditions=self.conditions, actions=self.actions)


class RuleFiring(models.Model):
    """A rule whose conditions matched an event: what it did (automatic) or recommended (advisory)."""

    class Mode(models.TextChoices):
        ADVISORY = "advisory", "Advisory"
        EXECUTED = "executed", "Executed"

    class Outcome(models.TextChoices):
        RECOMMENDED = "recommended", "Recommended"
        EXECUTED = "executed", "Executed"
        PARTLY_EXECUTED = "partly_executed", "Partly executed"
        FAILED = "failed", "Failed"

    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="firings")
    rule_version = models.PositiveIntegerField()
    rule_name = models.CharField(max_length=120)
    trigger = models.CharField(max_length=60)
    event = models.ForeignKey("portal.DomainEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject_type = models.CharField(max_length=60, blank=True, default="")
    subject_id = models.CharField(max_length=64, blank=True, default="")
    order_number = models.CharField(max_length=40, blank=True, default="", db_index=True)
    case_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    matched = models.BooleanField(default=True)
    mode = models.CharField(max_length=10, choices=Mode.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    actions = models.JSONField(default=list, encoder=DjangoJSONEncoder, help_text="Each action and what became of it")
    error = models.TextField(blank=True, default="")
    fired_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="firing_subject_idx")]

    def __str__(self) -> str:
        return f"{self.rule_name} v{self.rule_version} on {self.trigger} #{self.event_id}: {self.outcome}"


# --- risk scoring and recommendations -----------------------------------------------------


class RiskModel(models.Model):
    """A fitted, inspectable risk model: its parameters, the data it saw and its held-out quality."""

    version = models.PositiveIntegerField(unique=True)
    trained_at = models.DateTimeField(default=timezone.now)
    is_active = models.BooleanField(default=False)
    parameters = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    metrics = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    trained_by = models.CharField(max_length=160, blank=True, default="")

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="risk_model_one_active")
        ]

    def __str__(self) -> str:
        return f"risk model v{self.version}"


class RiskPolicy(models.Model):
    """What the risk model may decide: per decision (and case type), advisory or automatic, above a confidence."""

    class Decision(models.TextChoices):
        FLAG_HIGH_RISK_ORDER = "flag_high_risk_order", "Flag high-risk orders to customer service before the cutoff"
        CASE_RESOLUTION = "case_resolution", "Resolve a new exception case with the suggested resolution"

    class Mode(models.TextChoices):
        OFF = "off", "Off (no suggestion)"
        ADVISORY = "advisory", "Advisory (suggest; a person decides)"
        AUTOMATIC = "automatic", "Automatic (execute above the threshold)"

    name = models.CharField(max_length=120)
    decision = models.CharField(max_length=32, choices=Decision.choices)
    case_type_code = models.CharField(
        max_length=60,
        blank=True,
        default="",
        help_text="Case resolution: the case type this policy covers (empty: every type). "
        "High-risk flag: the case type raised in automatic mode.",
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ADVISORY)
    confidence_threshold = models.FloatField(
        default=0.8, help_text="0–1. Below it a suggestion stays advisory (case resolution) or is not made (flag)."
    )
    enabled = models.BooleanField(default=True)

    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        verbose_name_plural = "risk policies"
        ordering = ["decision", "case_type_code"]
        constraints = [
            models.UniqueConstraint(fields=["decision", "case_type_code"], name="risk_policy_unique"),
            models.CheckConstraint(
                condition=Q(confidence_threshold__gte=0) & Q(confidence_threshold__lte=1),
                name="risk_policy_threshold_0_1",
            ),
        ]

    def __str__(self) -> str:
        scope = f" [{self.case_type_code}]" if self.case_type_code else ""
        return f"{self.get_decision_display()}{scope}: {self.mode} ≥ {self.confidence_threshold:.2f}"


class Recommendation(TimeStampedModel):
    """Advice on an order or case — from an advisory rule or the risk model — and what a person did with it."""

    class Source(models.TextChoices):
        RULE = "rule", "Rule"
        RISK_MODEL = "risk_model", "Risk model"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACCEPTED = "accepted", "Accepted"
        EXECUTED = "executed", "Executed automatically"
        OVERRIDDEN = "overridden", "Overridden"
        EXPIRED = "expired", "No longer relevant"

    source = models.CharField(max_length=12, choices=Source.choices)
    subject_type = models.CharField(max_length=60, blank=True, default="")
    subject_id = models.CharField(max_length=64, blank=True, default="")
    order_number = models.CharField(max_length=40, blank=True, default="", db_index=True)
    case_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    action = models.CharField(max_length=40, help_text="What is recommended (an action or a resolution code)")
    params = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    summary = models.TextField()
    confidence = models.FloatField(null=True, blank=True)
    reasons = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True)
    firing = models.ForeignKey(RuleFiring, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    policy = models.ForeignKey(RiskPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.PositiveIntegerField(null=True, blank=True)
    decided_by = models.CharField(max_length=160, blank=True, default="")
    decided_reason = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    chosen_action = models.CharField(
        max_length=40, blank=True, default="", help_text="What the person did instead (on an override)"
    )

    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="recommendation_subject_idx")]

    def __str__(self) -> str:
        return f"{self.get_source_display()}: {self.action} ({self.status})"
