"""Portal pages that belong to no single app: the role home page and the login pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from portal.home import ROLE_FOCUS, panels_for
from portal.roles import roles_of


@login_required
def home(request):
    """The signed-in user's roles, what each owns, and the panels of their queues and work."""
    roles = sorted(roles_of(request.user), key=lambda role: role.label)
    context = {
        "roles": [{"code": role.value, "label": role.label, "focus": ROLE_FOCUS[role]} for role in roles],
        "panels": panels_for(request),
    }
    return render(request, "portal/home.html", context)
