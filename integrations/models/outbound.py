"""Messages the portal owes partners: written in the transaction of the change, delivered by workers."""

from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class OutboundMessage(models.Model):
    """One message to one partner. The row is the source of truth for delivery (state, attempts, next try)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead letter"
        DISCARDED = "discarded", "Discarded"

    # States that hold back later messages with the same ordering key (a dead letter blocks its key).
    BLOCKING = (Status.PENDING, Status.SENDING, Status.DEAD)

    partner = models.ForeignKey("integrations.Partner", on_delete=models.PROTECT, related_name="outbound_messages")
    message_type = models.CharField(max_length=60, db_index=True)
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    ordering_key = models.CharField(max_length=100, db_index=True, help_text="Messages with one key go in order")
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    source_event_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    order_number = models.CharField(max_length=40, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sending_since = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="A delivery task is queued for this row until then (the tick skips it)"
    )
    dead_at = models.DateTimeField(null=True, blank=True)
    corrected_from = models.JSONField(
        null=True,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The original payload, kept when a replay corrects it",
    )
    actor = models.CharField(max_length=160, blank=True, default="", help_text="Who or what caused the message")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="outbound_due_idx", condition=Q(status="pending")),
            models.Index(fields=["partner", "status"], name="outbound_partner_status_idx"),
            models.Index(
                fields=["partner", "ordering_key", "id"],
                name="outbound_blocking_idx",
                condition=Q(status__in=["pending", "sending", "dead"]),
            ),
            models.Index(fields=["sending_since"], name="outbound_sending_idx", condition=Q(status="sending")),
            # The monitor's "last success" per partner: one index probe each, however long the log has grown.
            models.Index(
                fields=["partner", "-delivered_at"], name="outbound_last_delivered_idx", condition=Q(status="delivered")
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "message_type", "source_event_id"],
                name="outbound_once_per_event",
                condition=Q(source_event_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.message_type}#{self.pk} {self.status}"

    def get_absolute_url(self) -> str:
        return reverse("integrations:message-detail", args=[self.pk])

    @property
    def subject_label(self) -> str:
        return f"{self.message_type} #{self.pk} to {self.partner_id}"


class OutboundAttempt(models.Model):
    """One try at delivering a message: what the partner answered, or why it could not be reached."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        RETRY = "retry", "Will retry"
        REFUSED = "refused", "Refused (not retried)"
        DEAD = "dead", "Gave up"
        LOST = "lost", "Worker lost, re-queued"

    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.FloatField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["message_id", "id"]
        indexes = [models.Index(fields=["started_at"], name="outbound_attempt_started_idx")]

    def __str__(self) -> str:
        return f"#{self.message_id} try {self.number}: {self.outcome}"


class OutboundAction(models.Model):
    """A person's replay, correction or discard of a message, with the reason (the audit trail of fixes)."""

    class Kind(models.TextChoices):
        REPLAY = "replay", "Replayed"
        CORRECT = "correct", "Corrected and replayed"
        DISCARD = "discard", "Discarded"

    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    actor = models.CharField(max_length=160)
    reason = models.TextField()
    previous_status = models.CharField(max_length=10)
    previous_payload = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    previous_idempotency_key = models.UUIDField(
        null=True, blank=True, help_text="A corrected payload goes out under a new key; this was the old one"
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message_id", "id"]

    def __str__(self) -> str:
        return f"#{self.message_id} {self.kind} by {self.actor}"
