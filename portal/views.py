"""Portal pages that belong to no single app: the role home page, the search, and the error pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from portal.home import ROLE_FOCUS, panels_for
from portal.roles import roles_of
from portal.search import clean_term, find


@login_required
def home(request):
    """The signed-in user's roles, what each owns, and the panels of their queues and work."""
    roles = sorted(roles_of(request.user), key=lambda role: role.label)
    context = {
        "roles": [{"code": role.value, "label": role.label, "focus": ROLE_FOCUS[role]} for role in roles],
        "panels": panels_for(request),
    }
    return render(request, "portal/home.html", context)


@login_required
@require_GET
def search(request):
    """The top bar's search: one record that is exactly the number or code typed opens straight away; otherwise
    what matched, of what this user may open."""
    term = clean_term(request.GET.get("q", ""))
    hits = find(term, request.user)
    exact = [hit for hit in hits if hit.exact]
    if len(exact) == 1:
        return redirect(exact[0].url)
    return render(request, "portal/search.html", {"term": term, "hits": hits})


def not_found(request, exception=None):
    """404: the API's one error format under /api/, a page that says where to go next elsewhere."""
    if request.path.startswith("/api/"):
        from portal.api import json_error

        return json_error("not_found", f"No API resource at {request.path}. See /api/docs/ for the endpoints.", 404)
    return render(request, "404.html", {"path": request.path}, status=404)


def bad_request(request, exception=None):
    """400 (a malformed request Django refused before any view: a bad Host header, too many fields)."""
    if request.path.startswith("/api/"):
        from portal.api import json_error

        return json_error(
            "bad_request", "The request could not be read and changed nothing; check it and send it again.", 400
        )
    return render(request, "400.html", status=400)


def permission_denied(request, exception=None):
    """403: why (the refusal the view gave), and what to do next; the API answers in its error format."""
    message = str(exception or "") or "This is not open to your role."
    if request.path.startswith("/api/"):
        from portal.api import json_error

        return json_error("forbidden", message, 403)
    return render(request, "403.html", {"exception": message}, status=403)


def csrf_failure(request, reason=""):
    """403 for a form sent from a page of an earlier sign-in (or from elsewhere): reload and send again."""
    return render(request, "403_csrf.html", {"reason": reason}, status=403)


def server_error(request):
    """500: nothing was changed; the API answers in its error format."""
    if request.path.startswith("/api/"):
        from portal.api import json_error

        return json_error("server_error", "The request could not be completed. It changed nothing; try again.", 500)
    return render(request, "500.html", status=500)
