"""Shared infrastructure models: the domain event outbox and history fields. No business logic."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class TimeStampedModel(models.Model):
    """Created / updated timestamps for every domain row."""

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class HistoryActorFields(models.Model):
    """Extra columns on every history table: the actor label and the full reason."""

    history_actor = models.CharField(max_length=160, blank=True, default="")
    history_reason = models.TextField(blank=True, default="")

    class Meta:
        abstract = True


class DomainEvent(models.Model):
    """A fact the domain published, written in the transaction of the change (the outbox).

    Its id is the global, database-assigned sequence live clients use to detect gaps.
    After commit it is dispatched to the subscribers that run outside the transaction;
    a periodic sweep re-dispatches any row whose dispatch was lost.
    """

    name = models.CharField(max_length=80, db_index=True)
    subject_type = models.CharField(max_length=60, blank=True, default="")
    subject_id = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    actor = models.CharField(max_length=160)
    reason = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["subject_type", "subject_id"], name="event_subject_idx"),
            models.Index(
                fields=["occurred_at"], name="event_undispatched_idx", condition=models.Q(dispatched_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name} {self.subject_type}:{self.subject_id}"


class EventDelivery(models.Model):
    """One subscriber's processing of one event; the unique pair makes subscribers idempotent."""

    event = models.ForeignKey(DomainEvent, on_delete=models.CASCADE, related_name="deliveries")
    handler = models.CharField(max_length=120)
    processed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "handler"], name="event_delivery_once")]

    def __str__(self) -> str:
        return f"{self.handler} ← {self.event_id}"
