"""Messages the portal owes partners: written in the transaction of the change, delivered by workers."""

from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboundMessage(models.Model):
    """One message to one partner. The row is the source of truth for delivery (state, attempts, next try)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead letter"
        DISCARDED = "discarded", "Discarded"

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

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="outbound_due_idx", condition=Q(status="pending")),
            models.Index(fields=["partner", "status"], name="outbound_partner_status_idx"),
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
