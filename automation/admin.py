"""Operations admin: equipment, rules (validated, versioned, with a dry run), risk policies and the logs."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from automation import rules, services
from automation.models import (
    Equipment,
    EquipmentFault,
    HandOff,
    Recommendation,
    RiskModel,
    RiskPolicy,
    Rule,
    RuleFiring,
)
from portal.actors import Actor, stamp_history
from portal.domain import DomainError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs are written by services only; the admin shows them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _status_action(status: str, label: str):
    def action(modeladmin, request, queryset):
        changed = 0
        for equipment in queryset:
            try:
                services.equipment_set_status(
                    equipment=equipment,
                    status=status,
                    now=timezone.now(),
                    actor=Actor.for_user(request.user),
                    reason=f"Admin: {label.lower()}",
                )
                changed += 1
            except DomainError as error:
                modeladmin.message_user(request, f"{equipment.code}: {error.message}", messages.ERROR)
        modeladmin.message_user(request, f"{changed} unit(s): {label.lower()}.")

    action.__name__ = f"set_{status}"
    action.short_description = label
    return action


@admin.register(Equipment)
class EquipmentAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "warehouse", "zone", "status", "last_heartbeat_at", "is_active"]
    list_filter = ["warehouse", "kind", "status", "zone", "is_active"]
    search_fields = ["code", "name"]
    readonly_fields = ["status", "status_reason", "status_changed_at", "last_heartbeat_at"]
    fieldsets = [
        (None, {"fields": ["code", "name", "kind", "warehouse", "zone", "capabilities", "is_active"]}),
        (
            "Hand-off settings",
            {
                "fields": [
                    "ack_timeout_seconds",
                    "progress_timeout_seconds",
                    "max_dispatch_attempts",
                    "max_tasks_in_flight",
                    "heartbeat_timeout_seconds",
                ]
            },
        ),
        (
            "State (changed by the WCS and the board)",
            {"fields": ["status", "status_reason", "status_changed_at", "last_heartbeat_at"]},
        ),
    ]
    actions = [
        _status_action(Equipment.Status.MAINTENANCE, "Take into maintenance"),
        _status_action(Equipment.Status.ONLINE, "Bring back online"),
    ]

    def save_model(self, request, obj, form, change):
        stamp_history(obj, actor=Actor.for_user(request.user), reason="Edited in the admin")
        super().save_model(request, obj, form, change)


class JSONText(forms.JSONField):
    """A JSON textarea that shows the value pretty-printed."""

    widget = forms.Textarea(attrs={"rows": 8, "cols": 90, "style": "font-family: monospace"})

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class RuleForm(forms.ModelForm):
    trigger = forms.ChoiceField(choices=rules.TRIGGER_CHOICES)
    conditions = JSONText(required=False, help_text=Rule._meta.get_field("conditions").help_text)
    actions = JSONText(help_text=Rule._meta.get_field("actions").help_text)

    class Meta:
        model = Rule
        fields = ["name", "description", "trigger", "conditions", "actions", "order", "enabled", "mode"]

    def clean_conditions(self):
        return self.cleaned_data.get("conditions") or {}


def _reference_html():
    rows = []
    for trigger in rules.TRIGGERS.values():
        fields = format_html_join(
            ", ",
            "<code>{}</code> <span style='color:#888'>({}{})</span>",
            (
                (
                    name,
                    rules.TYPE_LABELS[spec.type],
                    f": {'/'.join(c or '∅' for c in spec.choices)}" if spec.choices else "",
                )
                for name, spec in trigger.fields.items()
            ),
        )
        actions = ", ".join(sorted(trigger.actions))
        rows.append(
            format_html(
                "<tr><td><code>{}</code><br>{}</td><td>{}</td><td>{}</td></tr>",
                trigger.name,
                trigger.label,
                fields,
                actions,
            )
        )
    ops = ", ".join(f"{op} ({words})" for op, words in rules.OPS.items())
    return format_html(
        "<p>Operators: {}</p><table><thead><tr><th>Trigger</th><th>Fields</th><th>Actions</th></tr></thead>"
        "<tbody>{}</tbody></table><p>Action shapes: set_priority {{priority: 1–4}}, hold_order {{}}, route_case "
        "{{queue}}, raise_case {{case_type, summary?, severity?}}, auto_resolve_case {{resolution}}, notify_role "
        "{{role, message}}; each may carry a reason.</p>",
        ops,
        format_html_join("", "{}", ((r,) for r in rows)),
    )


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = ["name", "trigger", "order", "enabled", "mode", "version", "updated_at", "dry_run_link"]
    list_filter = ["trigger", "enabled", "mode"]
    list_editable = ["order"]
    search_fields = ["name", "description"]
    readonly_fields = ["version", "dry_run_link", "reference"]
    fieldsets = [
        (None, {"fields": ["name", "description", "trigger", "order", "enabled", "mode", "version", "dry_run_link"]}),
        ("When and what", {"fields": ["conditions", "actions"]}),
        ("Reference: triggers, fields and actions", {"classes": ["collapse"], "fields": ["reference"]}),
    ]
    actions = ["enable", "disable"]

    @admin.display(description="Dry run")
    def dry_run_link(self, obj):
        if not obj or not obj.pk:
            return "Save first (disabled), then dry-run it before enabling."
        return format_html(
            '<a href="{}?days=7">What would it have done in the last 7 days?</a>',
            reverse("automation:rule-dry-run", args=[obj.pk]),
        )

    @admin.display(description="Reference")
    def reference(self, obj):
        return _reference_html()

    def save_model(self, request, obj, form, change):
        services.rule_save(rule=obj, actor=Actor.for_user(request.user), reason="Edited in the admin")

    def _set_enabled(self, request, queryset, enabled: bool):
        changed = services.rules_set_enabled(
            rule_ids=list(queryset.values_list("pk", flat=True)),
            enabled=enabled,
            actor=Actor.for_user(request.user),
            reason="Enabled in the admin" if enabled else "Disabled in the admin",
        )
        self.message_user(request, f"{changed} rule(s) {'enabled' if enabled else 'disabled'}.")

    @admin.action(description="Enable selected rules")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected rules")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)


@admin.register(RuleFiring)
class RuleFiringAdmin(ReadOnlyAdmin):
    list_display = ["fired_at", "rule_name", "rule_version", "trigger", "event_id", "order_number", "mode", "outcome"]
    list_filter = ["mode", "outcome", "trigger"]
    search_fields = ["rule_name", "order_number", "subject_id"]
    date_hierarchy = "fired_at"


@admin.register(RiskPolicy)
class RiskPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "decision", "case_type_code", "mode", "confidence_threshold", "enabled"]
    list_filter = ["decision", "mode", "enabled"]

    def save_model(self, request, obj, form, change):
        stamp_history(obj, actor=Actor.for_user(request.user), reason="Edited in the admin")
        super().save_model(request, obj, form, change)


@admin.register(RiskModel)
class RiskModelAdmin(ReadOnlyAdmin):
    list_display = ["version", "trained_at", "is_active", "trained_by", "quality"]
    readonly_fields = ["version", "trained_at", "is_active", "trained_by", "metrics_pretty", "weights"]
    exclude = ["parameters", "metrics"]

    @admin.display(description="Held-out quality")
    def quality(self, obj):
        fitted = (obj.metrics or {}).get("at_fitted") or {}
        if fitted.get("precision") is None:
            return (obj.metrics or {}).get("note", "—")[:80]
        return f"precision {fitted['precision']:.2f}, recall {fitted['recall'] or 0:.2f} at {fitted['threshold']}"

    @admin.display(description="Metrics")
    def metrics_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2, default=str))

    @admin.display(description="Order-risk weights")
    def weights(self, obj):
        p = obj.parameters or {}
        rows = zip(p.get("features", []), p.get("weights", []), p.get("scales", []), strict=False)
        return format_html("<pre>{}</pre>", "\n".join(f"{name:<22} {w / s:+.4f} per unit" for name, w, s in rows))


@admin.register(Recommendation)
class RecommendationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "source", "action", "order_number", "case_id", "confidence", "status", "decided_by"]
    list_filter = ["source", "status", "action"]
    search_fields = ["order_number", "summary"]


@admin.register(HandOff)
class HandOffAdmin(ReadOnlyAdmin):
    list_display = ["sent_at", "task_id", "instruction_seq", "attempt", "equipment", "status", "order_number"]
    list_filter = ["status", "equipment"]
    search_fields = ["order_number", "task__id"]


@admin.register(EquipmentFault)
class EquipmentFaultAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "equipment", "kind", "code", "cleared_at", "case_id"]
    list_filter = ["kind", "equipment"]
