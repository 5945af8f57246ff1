"""Exception types, role queues, routing rules, SLA policies and the cases people work.

A case is a state machine; every transition goes through ``exceptions.services`` which
locks the row, runs the transition, records history with the actor and reason and
publishes the event that moves the case on every open queue page.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from portal.models import HistoryActorFields, TimeStampedModel
from portal.roles import Role


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK: dict[str, int] = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class Queue(models.Model):
    """A role's work queue. Seeded one per role that owns exceptions; its code is the role's value."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    role = models.CharField(max_length=40, choices=Role.choices)
    description = models.TextField(blank=True, default="")
    last_seq = models.BigIntegerField(default=0, editable=False, help_text="Sequence of the last queue change")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("exceptions:queue-detail", args=[self.code])


class SlaPolicy(models.Model):
    """How fast a case must be answered and resolved, and what happens when it is not."""

    name = models.CharField(max_length=80, unique=True)
    first_response_minutes = models.PositiveIntegerField(help_text="Minutes until someone must claim or act")
    resolution_minutes = models.PositiveIntegerField(help_text="Minutes until the case must be resolved")
    at_risk_percent = models.PositiveSmallIntegerField(
        default=75, help_text="Share of the resolution time after which the case shows as at risk"
    )
    pause_while_waiting = models.BooleanField(
        default=True, help_text="Stop the clock while the case waits on an external party"
    )
    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    """One step of an SLA policy's escalation ladder; fires at most once per case."""

    class Action(models.TextChoices):
        RAISE_PRIORITY = "raise_priority", "Raise priority"
        MOVE_QUEUE = "move_queue", "Move to another queue"
        NOTIFY = "notify", "Notify a role"

    policy = models.ForeignKey(SlaPolicy, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(default=1)
    after_minutes = models.PositiveIntegerField(help_text="Active (unpaused) minutes since the case was raised")
    action = models.CharField(max_length=20, choices=Action.choices)
    target_queue = models.ForeignKey(Queue, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    notify_role = models.CharField(max_length=40, choices=Role.choices, blank=True, default="")

    class Meta:
        ordering = ["policy", "position"]
        constraints = [models.UniqueConstraint(fields=["policy", "position"], name="escalation_step_position_unique")]

    def __str__(self) -> str:
        return f"{self.policy}: after {self.after_minutes} min → {self.get_action_display()}"


class ExceptionType(models.Model):
    """A kind of problem: who gets it by default, how fast, and which resolutions it allows.

    ``resolutions`` is a list of ``{"code": "reallocate", "label": "Reallocate", "roles": ["warehouse_supervisor"]}``;
    the codes name handlers in ``exceptions.resolutions``.
    """

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True, default="")
    default_severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    default_queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="+")
    sla_policy = models.ForeignKey(SlaPolicy, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    resolutions = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def allowed_resolutions(self) -> list[str]:
        return [entry["code"] for entry in self.resolutions]

    def roles_for(self, resolution: str) -> set[str]:
        """The roles allowed to apply `resolution` (empty when the type does not allow it)."""
        for entry in self.resolutions:
            if entry["code"] == resolution:
                return set(entry.get("roles") or [])
        return set()


class RoutingRule(models.Model):
    """An ordered condition → queue rule. First enabled match wins; a case records the rule and its version."""

    name = models.CharField(max_length=120)
    position = models.PositiveIntegerField(default=100, help_text="Lower runs first")
    enabled = models.BooleanField(default=True)
    exception_type = models.ForeignKey(
        ExceptionType, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty: any type"
    )
    warehouse = models.ForeignKey(
        "inventory.Warehouse", on_delete=models.CASCADE, null=True, blank=True, help_text="Empty: any warehouse"
    )
    customer_tier = models.CharField(max_length=20, blank=True, default="", help_text="Empty: any tier")
    min_severity = models.CharField(max_length=10, choices=Severity.choices, blank=True, default="")
    min_materiality = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Order or variance value at least this"
    )
    target_queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="+")
    priority = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: keep the severity's")
    sla_policy = models.ForeignKey(SlaPolicy, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    version = models.PositiveIntegerField(default=1, editable=False)
    history = HistoricalRecords(bases=[HistoryActorFields])

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"


class CaseQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=Case.ACTIVE_STATES)

    def in_queues(self, queues):
        return self.filter(queue__in=queues)


class Case(ConcurrentTransitionMixin, TimeStampedModel):
    """One problem in front of the role that owns it, with an SLA clock, until resolved."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ASSIGNED = "assigned", "Assigned"
        IN_PROGRESS = "in_progress", "In progress"
        WAITING_EXTERNAL = "waiting_external", "Waiting on external"
        ESCALATED = "escalated", "Escalated"
        RESOLVED = "resolved", "Resolved"
        AUTO_RESOLVED = "auto_resolved", "Auto-resolved"
        CANCELLED = "cancelled", "Cancelled"

    class SlaState(models.TextChoices):
        OK = "ok", "On time"
        AT_RISK = "at_risk", "At risk"
        BREACHED = "breached", "Breached"
        PAUSED = "paused", "Paused"

    ACTIVE_STATES = [
        Status.OPEN,
        Status.ASSIGNED,
        Status.IN_PROGRESS,
        Status.WAITING_EXTERNAL,
        Status.ESCALATED,
    ]
    WORKABLE = [Status.OPEN, Status.ASSIGNED, Status.IN_PROGRESS, Status.ESCALATED]
    CLOSED_STATES = [Status.RESOLVED, Status.AUTO_RESOLVED, Status.CANCELLED]

    type = models.ForeignKey(ExceptionType, on_delete=models.PROTECT, related_name="cases")
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True, db_index=True)
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="cases")
    routed_by = models.ForeignKey(RoutingRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    routed_by_version = models.PositiveIntegerField(null=True, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    priority = models.PositiveSmallIntegerField(default=2, help_text="1 low … 4 urgent")
    materiality = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    warehouse = models.ForeignKey("inventory.Warehouse", on_delete=models.PROTECT, null=True, blank=True)
    customer_tier = models.CharField(max_length=20, blank=True, default="")
    subject_type = models.CharField(max_length=60, help_text="app_label.model of what the case concerns")
    subject_id = models.CharField(max_length=64)
    subject_label = models.CharField(max_length=160, blank=True, default="")
    order_number = models.CharField(max_length=40, blank=True, default="", db_index=True)
    summary = models.CharField(max_length=300)
    context = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    source_event_id = models.BigIntegerField(null=True, blank=True)
    raised_by = models.CharField(max_length=160, help_text="Actor label")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="assigned_cases"
    )
    sla_policy = models.ForeignKey(SlaPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    first_responded_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_seconds = models.PositiveIntegerField(default=0)
    sla_state = models.CharField(max_length=10, choices=SlaState.choices, default=SlaState.OK)
    # When the SLA timer next has something to do (paused cases have none); kept by exceptions.services so the
    # beat job reads only cases that are due instead of scanning every open case.
    at_risk_at = models.DateTimeField(null=True, blank=True)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    sla_timer_at = models.DateTimeField(
        null=True, blank=True, help_text="The earliest of the timers above and due times"
    )
    escalation_level = models.PositiveSmallIntegerField(default=0)
    resolution_code = models.CharField(max_length=40, blank=True, default="")
    resolution_note = models.TextField(blank=True, default="")
    resolved_by = models.CharField(max_length=160, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_seq = models.BigIntegerField(default=0, help_text="DomainEvent id of the last change (live sequence)")

    objects = CaseQuerySet.as_manager()
    history = HistoricalRecords(
        bases=[HistoryActorFields],
        excluded_fields=["updated_at", "last_seq", "at_risk_at", "next_escalation_at", "sla_timer_at"],
    )

    class Meta:
        ordering = ["resolution_due_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["type", "subject_type", "subject_id"],
                condition=Q(status__in=["open", "assigned", "in_progress", "waiting_external", "escalated"]),
                name="case_one_active_per_subject",
            )
        ]
        indexes = [
            models.Index(fields=["queue", "status", "resolution_due_at"], name="case_queue_status_due_idx"),
            models.Index(fields=["subject_type", "subject_id"], name="case_subject_idx"),
            models.Index(fields=["sla_timer_at"], name="case_sla_timer_idx", condition=Q(sla_timer_at__isnull=False)),
            models.Index(
                fields=["at_risk_at"],
                name="case_at_risk_due_idx",
                condition=Q(status__in=["open", "assigned", "in_progress", "escalated"], sla_state="ok"),
            ),
        ]
        permissions = [("work_case", "Can work exception cases in their queues")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type.code} {self.subject_label or self.subject_id}"

    def get_absolute_url(self) -> str:
        return reverse("exceptions:case-detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATES

    # Transitions: pure field changes; exceptions.services locks, checks roles, saves and records.

    @transition(field=status, source=[Status.OPEN, Status.ASSIGNED, Status.ESCALATED], target=Status.ASSIGNED)
    def assign(self, *, assignee, now):
        self.assignee = assignee
        self.first_responded_at = self.first_responded_at or now

    @transition(field=status, source=[Status.OPEN, Status.ASSIGNED, Status.ESCALATED], target=Status.IN_PROGRESS)
    def start(self, *, now):
        self.first_responded_at = self.first_responded_at or now

    @transition(field=status, source=WORKABLE, target=Status.WAITING_EXTERNAL)
    def wait_on_external(self, *, now, pause: bool):
        if pause:
            self.paused_at = now

    @transition(field=status, source=Status.WAITING_EXTERNAL, target=Status.IN_PROGRESS)
    def resume(self, *, now):
        if self.paused_at:
            self.paused_seconds += int((now - self.paused_at).total_seconds())
            self.paused_at = None

    @transition(field=status, source=[Status.OPEN, Status.ASSIGNED, Status.IN_PROGRESS], target=Status.ESCALATED)
    def escalate(self):
        self.escalation_level += 1

    @transition(field=status, source=ACTIVE_STATES, target=Status.RESOLVED)
    def resolve(self, *, resolution: str, note: str, actor_label: str, now):
        self.resolution_code = resolution
        self.resolution_note = note
        self.resolved_by = actor_label
        self.resolved_at = now
        self.paused_at = None

    @transition(field=status, source=ACTIVE_STATES, target=Status.AUTO_RESOLVED)
    def auto_resolve(self, *, note: str, actor_label: str, now):
        self.resolution_code = "cause_cleared"
        self.resolution_note = note
        self.resolved_by = actor_label
        self.resolved_at = now
        self.paused_at = None

    @transition(field=status, source=ACTIVE_STATES, target=Status.CANCELLED)
    def cancel(self, *, note: str, actor_label: str, now):
        self.resolution_note = note
        self.resolved_by = actor_label
        self.resolved_at = now
        self.paused_at = None


class CaseComment(models.Model):
    """A note on a case by a person; part of its timeline."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"comment on #{self.case_id} by {self.author_id}"


class CaseEscalation(models.Model):
    """That an escalation step fired for a case; the unique pair makes the SLA timer fire each step once."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="escalations")
    step = models.ForeignKey(EscalationStep, on_delete=models.CASCADE, related_name="+")
    fired_at = models.DateTimeField()
    outcome = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "step"], name="case_escalation_once")]

    def __str__(self) -> str:
        return f"#{self.case_id} step {self.step_id}"


class QueueChange(models.Model):
    """One change to a queue's contents, numbered without gaps per queue.

    The sequence comes from ``Queue.last_seq`` incremented under the queue's row lock in the
    transaction of the change, so per queue the numbers commit in order. Live hints carry it;
    a page that sees a gap or reconnects reads the rows after its last number.
    """

    class Kind(models.TextChoices):
        ADDED = "added", "Added"  # raised into, or moved into, the queue
        UPDATED = "updated", "Updated"  # still in the queue, something changed
        REMOVED = "removed", "Removed"  # resolved, cancelled or moved away

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="changes")
    seq = models.BigIntegerField()
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=20)
    at = models.DateTimeField()

    class Meta:
        ordering = ["queue", "seq"]
        constraints = [models.UniqueConstraint(fields=["queue", "seq"], name="queue_change_seq_unique")]

    def __str__(self) -> str:
        return f"{self.queue_id}#{self.seq} {self.kind} case {self.case_id}"
