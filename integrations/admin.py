"""Operations admin for partners: who they are, what they may do, where messages go, and their API tokens.

A token is issued (and the earlier ones revoked) from the partner's page, with a reason, and shown once;
the hash is all that is kept. Messages and events are watched and fixed on the integration pages, not here.
"""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from integrations.auth import partner_token_issue, partner_tokens_revoke
from integrations.models import Partner, PartnerToken
from inventory.admin_actions import ReadOnlyInline, ReasonForm, ServiceAction, ServiceActionsAdmin
from portal.actors import Actor, stamp_history
from portal.domain import DomainError


class PartnerForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Partner.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="What its API token may do. A partner reads only its own orders.",
    )
    outbound_base_url = forms.URLField(
        required=False, assume_scheme="https", help_text="Where the portal posts its messages to this partner."
    )
    webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs its events and the portal's messages to it. Leave empty to keep the current one "
        "(a new partner gets a random one; the partner must be given it).",
    )

    class Meta:
        model = Partner
        fields = [
            "code",
            "name",
            "kind",
            "is_enabled",
            "scopes",
            "rate_limit_per_minute",
            "outbound_base_url",
            "webhook_secret",
            "timeout_seconds",
            "max_attempts",
        ]

    def clean_webhook_secret(self) -> str:
        secret = self.cleaned_data["webhook_secret"].strip()
        if secret and len(secret) < 16:
            raise forms.ValidationError("Use at least 16 characters.")
        if not secret:
            return self.instance.webhook_secret or secrets.token_urlsafe(32)
        return secret

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") in (Partner.Kind.ERP, Partner.Kind.WMS, Partner.Kind.TMS, Partner.Kind.WCS) and not (
            cleaned.get("outbound_base_url")
        ):
            self.add_error("outbound_base_url", "An ERP, WMS, TMS or WCS receives messages: give its base URL.")
        return cleaned


class TokenInline(ReadOnlyInline):
    model = PartnerToken
    fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    show_change_link = False
    ordering = ["-created_at"]
    verbose_name = "API token"
    verbose_name_plural = "API tokens (only the first characters are kept in clear)"


def _revoke_tokens(partner, actor, reason):
    if not partner_tokens_revoke(partner=partner, actor=actor, reason=reason):
        raise DomainError("It has no live token.")


@admin.register(Partner)
class PartnerAdmin(ServiceActionsAdmin):
    form = PartnerForm
    list_display = ["code", "name", "kind", "is_enabled", "scope_list", "outbound_base_url", "paused", "tokens"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["code", "name"]
    readonly_fields = ["deliveries_paused_until", "deliveries_pause_reason"]
    fieldsets = [
        (None, {"fields": ["code", "name", "kind", "is_enabled"]}),
        ("Inbound API", {"fields": ["scopes", "rate_limit_per_minute"]}),
        ("Outbound messages", {"fields": ["outbound_base_url", "webhook_secret", "timeout_seconds", "max_attempts"]}),
        (
            "Maintenance",
            {
                "fields": ["deliveries_paused_until", "deliveries_pause_reason"],
                "description": "IT support pauses and resumes deliveries from the integration monitor.",
            },
        ),
    ]
    inlines = [TokenInline]
    service_actions = [ServiceAction("revoke_tokens", "Revoke every API token", _revoke_tokens)]

    @admin.display(description="Scopes")
    def scope_list(self, partner: Partner) -> str:
        return ", ".join(partner.scopes or []) or "—"

    @admin.display(description="Deliveries paused until")
    def paused(self, partner: Partner):
        return partner.deliveries_paused_until if partner.deliveries_paused() else "—"

    @admin.display(description="Live tokens")
    def tokens(self, partner: Partner) -> int:
        return partner.live_tokens

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(live_tokens=Count("tokens", filter=Q(tokens__revoked_at__isnull=True)))
        )

    def save_model(self, request, obj, form, change):
        stamp_history(obj, actor=Actor.for_user(request.user), reason="Changed in the admin" if change else "Added")
        super().save_model(request, obj, form, change)

    # --- issuing a token: shown once ------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/issue-token/",
                self.admin_site.admin_view(self.issue_token_view),
                name="integrations_partner_issue_token",
            ),
            *super().get_urls(),
        ]

    def extra_buttons(self, request, obj) -> list[dict]:
        if not self.has_change_permission(request, obj):
            return []
        return [
            {"label": "Issue a new API token", "url": reverse("admin:integrations_partner_issue_token", args=[obj.pk])}
        ]

    def issue_token_view(self, request, object_id):
        """Ask why, issue a token (revoking the earlier ones) and show it once."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        partner = get_object_or_404(Partner, pk=object_id)
        form = ReasonForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": partner}
        if request.method == "POST" and form.is_valid():
            try:
                token = partner_token_issue(
                    partner=partner, actor=Actor.for_user(request.user), reason=form.cleaned_data["reason"]
                )
            except DomainError as error:
                messages.error(request, error.message)
                return redirect("admin:integrations_partner_change", partner.pk)
            response = TemplateResponse(
                request,
                "integrations/admin/token_issued.html",
                {**context, "title": f"New API token for {partner.code}", "token": token},
            )
            response["Cache-Control"] = "no-store"  # the clear token must not linger in a cache
            return response
        return TemplateResponse(
            request,
            "inventory/admin/service_action_form.html",
            {
                **context,
                "title": f"Issue a new API token for {partner.code}: give a reason",
                "action": {"label": "Issue a new API token"},
                "objects": [partner],
                "form": form,
                "bulk": False,
            },
        )
