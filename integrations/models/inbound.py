"""What partners send: logged requests, idempotency records and warehouse events."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform
from django.urls import reverse
from django.utils import timezone


class InboundRequest(models.Model):
    """One API request from a partner, kept for the message log and the order timeline."""

    partner = models.ForeignKey(
        "integrations.Partner", null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_requests"
    )
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=300)
    status_code = models.PositiveSmallIntegerField()
    payload = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True, default="")
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    order_number = models.CharField(max_length=40, blank=True, default="", db_index=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    duration_ms = models.FloatField(default=0)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # IT support looks a request up by the partner's own order reference, accepted or refused.
            models.Index(KeyTextTransform("external_ref", "payload"), name="inbound_request_ext_ref_idx"),
            models.Index(
                fields=["-received_at"], name="inbound_request_refused_idx", condition=Q(status_code__gte=400)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status_code}"

    def get_absolute_url(self) -> str:
        return reverse("integrations:request-detail", args=[self.pk])

    @property
    def refusal(self) -> str:
        """Why it was refused, on one line: the field errors where the message only points at them."""
        error = self.response.get("error") if isinstance(self.response, dict) else None
        fields = error.get("fields") if isinstance(error, dict) else None
        if not fields or not isinstance(fields, dict):
            return self.error
        return "; ".join(
            f"{name}: {' '.join(str(item) for item in problems) if isinstance(problems, list) else problems}"
            for name, problems in fields.items()
        )


class IdempotencyRecord(models.Model):
    """The first response to a partner's Idempotency-Key, replayed for repeats (kept at least 24 hours)."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"

    partner = models.ForeignKey("integrations.Partner", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_PROGRESS)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="While in progress: after this the first request counts as abandoned"
    )
    order_number = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "key"], name="idempotency_key_per_partner")]

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.key}"


class InboundEvent(models.Model):
    """A warehouse event (WMS/WCS/TMS) stored on receipt and processed by a worker, in order per subject."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored"

    partner = models.ForeignKey("integrations.Partner", on_delete=models.PROTECT, related_name="inbound_events")
    event_id = models.CharField(max_length=100)
    type = models.CharField(max_length=60)
    subject_key = models.CharField(max_length=100, help_text="Events of one subject run in order")
    occurred_at = models.DateTimeField()
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="After an unexpected error: when the worker tries again"
    )
    last_error = models.TextField(blank=True, default="")
    duplicates = models.PositiveIntegerField(default=0, help_text="Times the partner sent this event id again")
    order_number = models.CharField(max_length=40, blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [models.UniqueConstraint(fields=["partner", "event_id"], name="inbound_event_once")]
        indexes = [
            # The event queue: the oldest pending event of each subject is the next one to run. No index
            # leads with the status: with statistics taken while little was pending, the planner would
            # pick it for a subject's head and walk the whole backlog for each event it claims.
            models.Index(fields=["subject_key", "id"], name="inbound_event_queue_idx", condition=Q(status="pending")),
            models.Index(fields=["received_at", "id"], name="inbound_event_failed_idx", condition=Q(status="failed")),
            # Exact-match lookups of the event log's filters and search (no LIKE, so no pattern indexes).
            models.Index(fields=["subject_key"], name="inbound_event_subject_idx"),
            models.Index(fields=["type"], name="inbound_event_type_idx"),
            models.Index(fields=["order_number"], name="inbound_event_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.event_id} {self.type}"

    def get_absolute_url(self) -> str:
        return reverse("integrations:event-detail", args=[self.pk])
