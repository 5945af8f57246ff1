"""Infrastructure signal handlers only: history columns and live-socket revocation."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from simple_history.signals import pre_create_historical_record


@receiver(pre_create_historical_record)
def copy_actor_to_history(sender, instance, history_instance, **kwargs):
    """Fill the actor label and full reason that services attach with stamp_history()."""
    if hasattr(history_instance, "history_actor"):
        actor = getattr(instance, "_history_actor", "")
        if not actor and history_instance.history_user_id:
            actor = f"user:{history_instance.history_user.get_username()}"
        history_instance.history_actor = actor or "system:unattributed"
        history_instance.history_reason = getattr(instance, "_history_reason_full", "") or (
            history_instance.history_change_reason or ""
        )


def notify_user_sockets(user_id: int, message_type: str) -> None:
    """Tell the user's open sockets (session revoked, roles changed); on a Redis outage they re-check later."""
    from portal.live import group_send

    group_send(f"user.{user_id}", {"type": message_type})


@receiver(user_logged_out)
def close_sockets_on_logout(sender, request, user, **kwargs):
    if user is not None:
        notify_user_sockets(user.pk, "session.revoked")


@receiver(m2m_changed, sender=get_user_model().groups.through)
def recheck_sockets_on_role_change(sender, instance, action, **kwargs):
    if action in {"post_add", "post_remove", "post_clear"} and isinstance(instance, get_user_model()):
        user_id = instance.pk
        transaction.on_commit(lambda: notify_user_sockets(user_id, "roles.changed"))


APP_LABELS_FOR_OPERATIONS_ADMIN = ["inventory", "orchestration", "exceptions", "integrations", "automation", "portal"]


def grant_role_permissions(sender, **kwargs):
    """After migrate: give each role group the model permissions its apps declare.

    Operations admin configures everything in the admin, so it gets every permission of the
    portal's apps; the other roles get what the apps list in ``ROLE_PERMISSIONS``.
    """
    import importlib

    from django.contrib.auth.models import Group, Permission

    from portal.roles import Role

    try:
        admin_group = Group.objects.get(name=Role.OPERATIONS_ADMIN.label)
    except Group.DoesNotExist:
        return
    admin_group.permissions.add(*Permission.objects.filter(content_type__app_label__in=APP_LABELS_FOR_OPERATIONS_ADMIN))
    for app in APP_LABELS_FOR_OPERATIONS_ADMIN:
        try:
            module = importlib.import_module(f"{app}.permissions")
        except ModuleNotFoundError:
            continue
        for role, codenames in getattr(module, "ROLE_PERMISSIONS", {}).items():
            group = Group.objects.filter(name=role.label).first()
            if group:
                group.permissions.add(*Permission.objects.filter(content_type__app_label=app, codename__in=codenames))
