"""Partner systems and their scoped credentials."""

from __future__ import annotations

import hashlib

from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from portal.models import HistoryActorFields, TimeStampedModel


class Partner(TimeStampedModel):
    """An external system the portal exchanges messages with (ERP, WMS, TMS, WCS, storefront/EDI)."""

    class Kind(models.TextChoices):
        ERP = "erp", "ERP"
        WMS = "wms", "WMS"
        TMS = "tms", "TMS"
        WCS = "wcs", "WCS"
        STOREFRONT = "storefront", "Storefront / EDI"

    class Scope(models.TextChoices):
        ORDERS_WRITE = "orders:write", "Create and cancel orders"
        ORDERS_READ = "orders:read", "Read its own orders"
        AVAILABILITY_READ = "availability:read", "Read availability"
        EVENTS_WRITE = "events:write", "Post warehouse events"

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    scopes = models.JSONField(default=list, blank=True, help_text="List of scope codes this partner may use")
    webhook_secret = models.CharField(
        max_length=128, blank=True, default="", help_text="Shared secret for signing events and outbound messages"
    )
    outbound_base_url = models.URLField(blank=True, default="")
    is_enabled = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    max_attempts = models.PositiveSmallIntegerField(default=8, help_text="Outbound attempts before dead letter")
    timeout_seconds = models.FloatField(default=5.0)
    deliveries_paused_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Until then messages to this partner are kept waiting, not tried (a maintenance window)",
    )
    deliveries_pause_reason = models.CharField(max_length=300, blank=True, default="")

    history = HistoricalRecords(bases=[HistoryActorFields], excluded_fields=["webhook_secret"])

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])

    def deliveries_paused(self, now=None) -> bool:
        """Whether messages to this partner are held back right now."""
        return self.deliveries_paused_until is not None and self.deliveries_paused_until > (now or timezone.now())


class PartnerToken(models.Model):
    """A bearer token of a partner, stored as a SHA-256 hash; the clear token is shown once."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=12, db_index=True, help_text="First characters, to recognise a token")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.prefix}…"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()
