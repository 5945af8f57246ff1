"""Admin support for state changes that must go through services: actions and buttons asking for a reason.

django-fsm-2's ``FSMAdminMixin`` calls the raw transition method and saves the row, which
would skip the services' locks, policy checks, history reason and events. So transitions
are offered here as :class:`ServiceAction`\\ s instead: each is a changelist action (with an
intermediate page asking for the reason) and a button on the change form. Every selected
row is re-checked on its own (permission, then the service's own refusal) and failures
are reported per row; one refusal never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from simple_history.admin import SimpleHistoryAdmin

from portal.actors import Actor
from portal.domain import DomainError


@dataclass(frozen=True)
class ServiceAction:
    """One business action offered in the admin: ``call(obj, actor, reason)`` runs the service."""

    name: str
    label: str
    call: Callable
    applies: Callable = lambda obj: True  # whether to show the button for this object
    permission: str = "change"  # the model permission a person needs to take it


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=1000,
        help_text="Recorded in the history and on the events, with your name.",
    )


class ServiceActionsAdmin(SimpleHistoryAdmin):
    """History views plus service actions; history cannot be reverted (that would bypass the services)."""

    service_actions: list[ServiceAction] = []
    change_form_template = "inventory/admin/service_change_form.html"
    read_only = False  # state-machine rows: fields are never edited here, only the actions change them

    def has_change_permission(self, request, obj=None):
        if self.read_only and obj is not None:
            return False
        return super().has_change_permission(request, obj)

    # --- history: read-only -----------------------------------------------------------

    def revert_disabled(self, request, obj=None):
        return True

    def history_view(self, request, object_id, extra_context=None):
        if not hasattr(self.model, "history"):  # stock rows: the ledger is their history
            return admin.ModelAdmin.history_view(self, request, object_id, extra_context)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied("History is a record; it cannot be reverted from here.")
        return super().history_form_view(request, object_id, version_id, extra_context)

    # --- actions ----------------------------------------------------------------------

    def _allowed(self, request, action: ServiceAction, obj=None) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.{action.permission}_{opts.model_name}")

    def get_actions(self, request):
        actions = super().get_actions(request)
        for action in self.service_actions:
            if self._allowed(request, action):
                actions[action.name] = (self._make_bulk(action), action.name, action.label)
        return actions

    def _make_bulk(self, action: ServiceAction):
        def bulk(modeladmin, request, queryset):
            form = ReasonForm(request.POST if "apply" in request.POST else None)
            if "apply" in request.POST and form.is_valid():
                self.run_service_action(request, action, list(queryset.order_by("pk")), form.cleaned_data["reason"])
                return None
            return TemplateResponse(
                request,
                "inventory/admin/service_action_form.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": f"{action.label}: give a reason",
                    "action": action,
                    "objects": queryset,
                    "form": form,
                    "bulk": True,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )

        bulk.__name__ = action.name
        return bulk

    def run_service_action(self, request, action: ServiceAction, objects: list, reason: str) -> list:
        """Run the service for each object on its own; report each failure and the number done."""
        actor = Actor.for_user(request.user)
        done = []
        for obj in objects:
            if not self._allowed(request, action, obj):
                self.message_user(request, f"{obj}: you may not {action.label.lower()}.", messages.ERROR)
                continue
            try:
                action.call(obj, actor, reason)
            except DomainError as error:
                self.message_user(request, f"{obj}: {error.message}", messages.ERROR)
            else:
                done.append(obj)
        if done:
            self.message_user(request, f"{action.label}: done for {len(done)} of {len(objects)}.", messages.SUCCESS)
        return done

    # --- buttons on the change form -----------------------------------------------------

    def get_urls(self):
        opts = self.model._meta
        return [
            path(
                "<path:object_id>/do/<slug:action_name>/",
                self.admin_site.admin_view(self.service_action_view),
                name=f"{opts.app_label}_{opts.model_name}_service_action",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        opts = self.model._meta
        buttons = [
            {
                "label": action.label,
                "url": reverse(
                    f"admin:{opts.app_label}_{opts.model_name}_service_action", args=[object_id, action.name]
                ),
            }
            for action in self.service_actions
            if obj is not None and action.applies(obj) and self._allowed(request, action, obj)
        ]
        if obj is not None:
            buttons = [*self.extra_buttons(request, obj), *buttons]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "service_buttons": buttons})

    def extra_buttons(self, request, obj) -> list[dict]:
        """Buttons of the change form's own views that are not reason-only actions ({"label", "url"})."""
        return []

    def service_action_view(self, request, object_id, action_name):
        action = next((a for a in self.service_actions if a.name == action_name), None)
        obj = get_object_or_404(self.model, pk=object_id)
        if action is None or not self._allowed(request, action, obj):
            raise PermissionDenied
        opts = self.model._meta
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            self.run_service_action(request, action, [obj], form.cleaned_data["reason"])
            return redirect(f"admin:{opts.app_label}_{opts.model_name}_change", obj.pk)
        return TemplateResponse(
            request,
            "inventory/admin/service_action_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "title": f"{action.label}: give a reason",
                "action": action,
                "objects": [obj],
                "original": obj,
                "form": form,
                "bulk": False,
            },
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services (ledger lines, logs): viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
