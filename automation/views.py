"""The equipment board (live), one unit's page, a supervisor's status change, the rules dry run, decisions on advice."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from automation import rules, selectors, services
from automation.models import Equipment, Recommendation, Rule
from inventory.models import Warehouse
from orchestration.selectors import may_open_orders
from portal.actors import Actor
from portal.cases import cases_about
from portal.domain import DomainError
from portal.home import home_panel, panel_alone
from portal.roles import Role, allowed, require_role

BOARD_ROLES = (Role.WAREHOUSE_SUPERVISOR, Role.OPERATIONS_ADMIN)
ADVICE_ROLES = (Role.WAREHOUSE_SUPERVISOR, Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN)
MAX_DRY_RUN_DAYS = 90


def _require(request, *roles):
    require_role(request.user, *roles, refusal="This page belongs to another role.")


def _board_context(request) -> dict:
    warehouse = request.GET.get("warehouse") or None
    board = selectors.equipment_board(now=timezone.now(), warehouse=warehouse)
    return {
        "board": board,
        "warehouse": warehouse or "",
        "statuses": Equipment.Status.choices,
        "warehouses": Warehouse.objects.filter(is_active=True).order_by("code").values_list("code", "name"),
        "can_change": allowed(request.user, *BOARD_ROLES),
    }


@home_panel(
    key="equipment",
    title="Equipment",
    template="automation/_home_equipment.html",
    roles=BOARD_ROLES,
    order=35,
)
def equipment_panel(request) -> dict:
    return selectors.equipment_summary(now=timezone.now())


@login_required
@require_GET
def equipment_panel_alone(request):
    """The home page's equipment panel alone, refetched by the page every 15 seconds."""
    return panel_alone(
        request,
        equipment_panel,
        "automation/_home_equipment_body.html",
        roles=BOARD_ROLES,
        refusal="The equipment panel belongs to supervisors.",
    )


@login_required
@require_GET
def equipment_board(request):
    """Status per zone, tasks in flight per unit, faults with age; live over the portal socket."""
    _require(request, *BOARD_ROLES)
    return render(request, "automation/equipment_board.html", _board_context(request))


@login_required
@require_GET
def equipment_board_fragment(request):
    """The board's body alone, fetched by the page when a live hint arrives."""
    _require(request, *BOARD_ROLES)
    return render(request, "automation/_board.html", _board_context(request))


def _unit_context(request, code: str) -> dict:
    _require(request, *BOARD_ROLES)
    equipment = Equipment.objects.select_related("warehouse").filter(code=code).first()
    if equipment is None:
        raise Http404(f"No equipment {code}.")
    unit = selectors.unit_detail(equipment, now=timezone.now())
    cases = cases_about(equipment, viewer=request.user)
    case_urls = {row["case"].pk: row["url"] for row in cases}
    for row in unit.faults:
        row["case_url"] = case_urls.get(row["fault"].case_id, "")
    return {
        "unit": unit,
        "cases": cases,
        "can_change": allowed(request.user, *BOARD_ROLES),
        "order_links": may_open_orders(request.user),
    }


@login_required
@require_GET
def equipment_detail(request, code: str):
    """One unit: its status over the last day as a strip, faults, open instructions and the cases about it (live)."""
    return render(request, "automation/equipment_detail.html", _unit_context(request, code))


@login_required
@require_GET
def equipment_detail_fragment(request, code: str):
    """A unit's page body alone, fetched by the page when a live hint about equipment arrives."""
    return render(request, "automation/_unit.html", _unit_context(request, code))


@login_required
@require_POST
def equipment_status(request, code: str):
    """A supervisor takes a unit into maintenance or back online (with a reason, recorded)."""
    _require(request, *BOARD_ROLES)
    equipment = get_object_or_404(Equipment, code=code)
    status = request.POST.get("status", "")
    reason = request.POST.get("reason", "").strip()
    if status not in (Equipment.Status.MAINTENANCE, Equipment.Status.ONLINE):
        messages.error(request, "Choose maintenance or online.")
    else:
        try:
            services.equipment_set_status(
                equipment=equipment,
                status=status,
                now=timezone.now(),
                actor=Actor.for_user(request.user),
                reason=reason,
            )
            messages.success(request, f"{equipment.code} is now {status}.")
        except DomainError as error:
            messages.error(request, error.message)
    if request.POST.get("back") == "unit":
        return redirect("automation:equipment-detail", code=equipment.code)
    return redirect("automation:equipment-board")


@login_required
@require_GET
def rule_dry_run(request, pk: int):
    """What a rule would have done over the last N days of events, without doing anything."""
    _require(request, Role.OPERATIONS_ADMIN)
    rule = get_object_or_404(Rule, pk=pk)
    try:
        days = max(1, min(int(request.GET.get("days", "7")), MAX_DRY_RUN_DAYS))
    except ValueError:
        days = 7
    result, error = None, ""
    try:
        result = rules.dry_run(trigger=rule.trigger, conditions=rule.conditions, actions=rule.actions, days=days)
    except ValidationError as invalid:
        error = "; ".join(f"{k}: {' '.join(v)}" for k, v in invalid.message_dict.items())
    return render(
        request,
        "automation/rule_dry_run.html",
        {
            "rule": rule,
            "days": days,
            "result": result,
            "error": error,
            "max_days": MAX_DRY_RUN_DAYS,
            "firings": selectors.rule_firings(rule_id=rule.pk, limit=20),
        },
    )


@login_required
@require_POST
def recommendation_decide(request, pk: int, decision: str):
    """Accept advice (runs its action) or override it; both need a reason and are recorded."""
    _require(request, *ADVICE_ROLES)
    recommendation = get_object_or_404(Recommendation, pk=pk)
    reason = request.POST.get("reason", "").strip()
    actor = Actor.for_user(request.user)
    try:
        if decision == "accept":
            services.recommendation_accept(recommendation=recommendation, actor=actor, reason=reason)
        elif decision == "override":
            services.recommendation_override(
                recommendation=recommendation,
                actor=actor,
                reason=reason,
                chosen_action=request.POST.get("chosen_action", "")[:40],
            )
        else:
            raise Http404
        messages.success(request, f"Recommendation {'accepted' if decision == 'accept' else 'overridden'}.")
    except DomainError as error:
        messages.error(request, error.message)
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("home")
