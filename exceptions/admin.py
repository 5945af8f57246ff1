"""Operations admin for exceptions: types, queues, SLA policies with their escalation ladder, routing rules
(ordered, versioned through a service) and the cases themselves (read-only, with their history).

Every save goes through a service so the history row carries the admin user and a reason; cases
change only in the portal, through their own services.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from simple_history.admin import SimpleHistoryAdmin

from exceptions import resolutions, services
from exceptions.models import (
    Case,
    CaseComment,
    CaseEscalation,
    EscalationStep,
    ExceptionType,
    Queue,
    QueueChange,
    RoutingRule,
    SlaPolicy,
)
from portal.actors import Actor
from portal.roles import Role

ROLE_VALUES = {role.value for role in Role}


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):
    """History is a record: viewable, never reverted from here."""

    def revert_disabled(self, request, obj=None):
        return True


def _admin_actor(request) -> Actor:
    return Actor.for_user(request.user)


# --- exception types -----------------------------------------------------------------


def validate_resolutions(value) -> list[dict]:
    """A list of {code, label, roles}: codes the registry knows, each once; roles that exist."""
    if not isinstance(value, list):
        raise ValidationError('A list of resolutions: [{"code": …, "label": …, "roles": [...]}].')
    errors, seen, clean = [], set(), []
    for index, entry in enumerate(value, start=1):
        if not isinstance(entry, dict):
            errors.append(f"Entry {index} must be an object with code, label and roles.")
            continue
        code, label, roles = entry.get("code"), entry.get("label", ""), entry.get("roles", [])
        unknown_keys = set(entry) - {"code", "label", "roles"}
        if unknown_keys:
            errors.append(f"Entry {index}: unknown keys {', '.join(sorted(unknown_keys))}.")
        if code not in resolutions.RESOLUTIONS or code == "cause_cleared":
            choices = ", ".join(sorted(set(resolutions.RESOLUTIONS) - {"cause_cleared"}))
            errors.append(f"Entry {index}: unknown resolution {code!r}; one of {choices}.")
        elif code in seen:
            errors.append(f"Entry {index}: {code} is listed twice.")
        seen.add(code)
        if not isinstance(label, str) or not label.strip():
            errors.append(f"Entry {index}: give a label people will see on the button.")
        if not isinstance(roles, list) or not roles:
            errors.append(f"Entry {index}: list at least one role that may take it.")
        else:
            bad = [role for role in roles if role not in ROLE_VALUES]
            if bad:
                errors.append(
                    f"Entry {index}: unknown role(s) {', '.join(map(str, bad))}; one of {', '.join(sorted(ROLE_VALUES))}."
                )
        clean.append(
            {"code": code, "label": str(label).strip(), "roles": list(roles) if isinstance(roles, list) else []}
        )
    if errors:
        raise ValidationError(errors)
    return clean


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class ExceptionTypeForm(forms.ModelForm):
    resolutions = PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "style": "font-family: monospace"}),
        help_text='[{"code": "reallocate", "label": "Reallocate", "roles": ["warehouse_supervisor"]}, …] — codes: '
        + ", ".join(sorted(set(resolutions.RESOLUTIONS) - {"cause_cleared"})),
    )

    class Meta:
        model = ExceptionType
        fields = [
            "code",
            "name",
            "description",
            "default_severity",
            "default_queue",
            "sla_policy",
            "resolutions",
            "enabled",
        ]

    def clean_resolutions(self):
        return validate_resolutions(self.cleaned_data["resolutions"])


@admin.register(ExceptionType)
class ExceptionTypeAdmin(ReadOnlyHistoryAdmin):
    form = ExceptionTypeForm
    list_display = ["code", "name", "default_severity", "default_queue", "sla_policy", "resolution_codes", "enabled"]
    list_filter = ["enabled", "default_queue", "default_severity"]
    search_fields = ["code", "name"]

    @admin.display(description="Resolutions")
    def resolution_codes(self, obj):
        return ", ".join(obj.allowed_resolutions)

    def save_model(self, request, obj, form, change):
        services.config_save(instance=obj, actor=_admin_actor(request), reason="Changed in the admin")


# --- queues and SLA ---------------------------------------------------------------------


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "role", "open_cases", "last_seq"]
    readonly_fields = ["last_seq"]
    search_fields = ["code", "name"]

    @admin.display(description="Open cases")
    def open_cases(self, obj):
        return obj.cases.filter(status__in=Case.ACTIVE_STATES).count()

    def get_readonly_fields(self, request, obj=None):
        # The code is the role's value and the live groups hang off it: fixed once the queue exists.
        return ["code", "role", "last_seq"] if obj else ["last_seq"]


class EscalationStepForm(forms.ModelForm):
    class Meta:
        model = EscalationStep
        fields = ["position", "after_minutes", "action", "target_queue", "notify_role"]

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == EscalationStep.Action.MOVE_QUEUE and not data.get("target_queue"):
            self.add_error("target_queue", "Moving to another queue needs the queue.")
        if action == EscalationStep.Action.NOTIFY and not data.get("notify_role"):
            self.add_error("notify_role", "Notifying needs the role to notify.")
        return data


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    form = EscalationStepForm
    extra = 1
    ordering = ["position"]


@admin.register(SlaPolicy)
class SlaPolicyAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "name",
        "first_response_minutes",
        "resolution_minutes",
        "at_risk_percent",
        "pause_while_waiting",
        "ladder",
    ]
    inlines = [EscalationStepInline]

    @admin.display(description="Escalation")
    def ladder(self, obj):
        return "; ".join(f"{step.after_minutes} min: {step.get_action_display().lower()}" for step in obj.steps.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("steps")

    def save_model(self, request, obj, form, change):
        services.config_save(instance=obj, actor=_admin_actor(request), reason="Changed in the admin")


# --- routing rules ------------------------------------------------------------------------


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = [
            "name",
            "position",
            "enabled",
            "exception_type",
            "warehouse",
            "customer_tier",
            "min_severity",
            "min_materiality",
            "target_queue",
            "priority",
            "sla_policy",
        ]

    def clean_priority(self):
        priority = self.cleaned_data.get("priority")
        if priority is not None and not 1 <= priority <= 4:
            raise ValidationError("Priority runs from 1 (low) to 4 (urgent).")
        return priority

    def clean_customer_tier(self):
        from orchestration.models import Customer

        tier = (self.cleaned_data.get("customer_tier") or "").strip()
        if tier and tier not in Customer.ServiceTier.values:
            raise ValidationError(f"One of {', '.join(Customer.ServiceTier.values)}, or empty for any tier.")
        return tier


@admin.register(RoutingRule)
class RoutingRuleAdmin(ReadOnlyHistoryAdmin):
    form = RoutingRuleForm
    list_display = [
        "position",
        "name",
        "enabled",
        "exception_type",
        "warehouse",
        "customer_tier",
        "min_severity",
        "min_materiality",
        "target_queue",
        "priority",
        "sla_policy",
        "version",
    ]
    list_display_links = ["name"]
    list_editable = ["position", "enabled"]
    list_filter = ["enabled", "exception_type", "target_queue"]
    ordering = ["position", "pk"]
    readonly_fields = ["version"]
    search_fields = ["name"]

    def save_model(self, request, obj, form, change):
        services.routing_rule_save(rule=obj, actor=_admin_actor(request), reason="Changed in the admin")


# --- cases (read-only) ----------------------------------------------------------------------


class CaseCommentInline(admin.TabularInline):
    model = CaseComment
    fields = ["created_at", "author", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class CaseEscalationInline(admin.TabularInline):
    model = CaseEscalation
    fields = ["fired_at", "step", "outcome"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Case)
class CaseAdmin(ReadOnlyHistoryAdmin):
    """Cases change in the portal through their services; here they are read, filtered and traced."""

    list_display = [
        "pk",
        "type",
        "status",
        "queue",
        "severity",
        "priority",
        "sla_state",
        "resolution_due_at",
        "order_number",
        "subject_label",
        "occurrences",
        "assignee",
        "created_at",
    ]
    list_filter = ["status", "queue", "type", "severity", "sla_state", "warehouse", "customer_tier"]
    search_fields = ["=id", "order_number", "subject_label", "summary", "subject_id"]
    list_select_related = ["type", "queue", "assignee"]
    date_hierarchy = "created_at"
    inlines = [CaseEscalationInline, CaseCommentInline]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Case._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(QueueChange)
class QueueChangeAdmin(admin.ModelAdmin):
    list_display = ["queue", "seq", "case", "kind", "status", "at"]
    list_filter = ["queue", "kind"]
    list_select_related = ["queue"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
