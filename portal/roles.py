"""The roles people work in. Each is a Django group created by a migration."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import models


class Role(models.TextChoices):
    WAREHOUSE_SUPERVISOR = "warehouse_supervisor", "Warehouse supervisor"
    CUSTOMER_SERVICE = "customer_service", "Customer service"
    FINANCE = "finance", "Finance"
    PROCUREMENT = "procurement", "Procurement"
    TRANSPORTATION = "transportation", "Transportation"
    IT_SUPPORT = "it_support", "IT support"
    OPERATIONS_ADMIN = "operations_admin", "Operations admin"


GROUP_NAME_TO_ROLE = {role.label: role for role in Role}

# Roles that own an exception queue (operations admin configures rules instead).
QUEUE_ROLES = [role for role in Role if role != Role.OPERATIONS_ADMIN]


def roles_of(user) -> frozenset[Role]:
    """The roles a user holds, cached on the user object for the request."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_portal_roles", None)
    if cached is not None:
        return cached
    names = user.groups.values_list("name", flat=True)
    roles = frozenset(GROUP_NAME_TO_ROLE[name] for name in names if name in GROUP_NAME_TO_ROLE)
    user._portal_roles = roles
    return roles


def working_roles(user) -> frozenset[Role]:
    """The roles whose work a user may do: those they hold, and every one for a superuser (as `allowed`)."""
    if user is not None and user.is_authenticated and user.is_active and user.is_superuser:
        return frozenset(Role)
    return roles_of(user)


def has_role(user, *roles: Role) -> bool:
    return bool(roles_of(user) & set(roles))


def forget_roles(user) -> None:
    """Drop the cached roles (after a group change)."""
    if hasattr(user, "_portal_roles"):
        del user._portal_roles


def allowed(user, *roles: Role) -> bool:
    """A superuser, or a user holding one of `roles`: who may open a page or take an action."""
    return bool(user.is_superuser or has_role(user, *roles))


def require_role(user, *roles: Role, refusal: str) -> None:
    """Refuse (403 with `refusal`) anyone not allowed(user, *roles)."""
    if not allowed(user, *roles):
        raise PermissionDenied(refusal)
