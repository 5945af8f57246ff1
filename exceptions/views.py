"""The portal's queue pages: role home panel, queue list, queue page, case page and the actions on cases.

Every view checks that the queue (or the case's queue) belongs to one of the user's roles and
answers 403 otherwise. Actions call ``exceptions.services`` and redirect back with the outcome
(POST-redirect-GET); a form with a missing reason is shown again with what was typed.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from exceptions import selectors
from exceptions.forms import RESOLUTION_PARAMS, AssignForm, BulkForm, CommentForm, ReasonForm, ResolveForm, RouteForm
from exceptions.models import Case, ExceptionType, Queue
from portal.actors import Actor
from portal.api import json_error
from portal.domain import DomainError, NotFound, PermissionRefused
from portal.home import home_panel
from portal.roles import QUEUE_ROLES, allowed

# --- errors -------------------------------------------------------------------------------


def _refused(request, error: DomainError, *, as_json: bool = False):
    """A refused page or action: the reason and what to do next, with the error's status (403/404/409)."""
    if as_json:
        return json_error(error.code, error.message, error.status, error.fields)
    return render(
        request,
        "exceptions/refused.html",
        {"message": error.message, "status": error.status},
        status=error.status,
    )


def _back(request, fallback: str) -> HttpResponseRedirect:
    """Redirect (303) to the page the action came from when it is ours, else to `fallback`."""
    target = request.POST.get("next", "")
    if not (
        target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure())
    ):
        target = fallback
    return HttpResponseRedirect(target, status=303)


def _actor(request) -> Actor:
    return Actor.for_user(request.user)


# --- the role home ------------------------------------------------------------------------


@home_panel(
    key="queues",
    title="Your queues",
    template="exceptions/_home_queues.html",
    roles=QUEUE_ROLES,
    order=10,
)
def queues_panel(request) -> dict:
    queues = selectors.queues_for_user(request.user)
    return {"summaries": selectors.queue_summaries(queues)}


@home_panel(
    key="due_next",
    title="Due next",
    template="exceptions/_home_due_next.html",
    roles=QUEUE_ROLES,
    order=20,
)
def due_next_panel(request) -> dict:
    return _due_next_context(request.user)


def _due_next_context(user) -> dict:
    """The first cases to fall due across the user's queues, with the clock each row shows."""
    queues = selectors.queues_for_user(user)
    now = timezone.now()
    filters = selectors.QueueFilters.from_params({})
    return {
        "queue_codes": " ".join(queue.code for queue in queues),
        "several_queues": len(queues) > 1,
        "rows": [_row_context(case, filters, now, user) for case in selectors.cases_due_next(queues)],
        "url": reverse("exceptions:due-next"),
    }


@login_required
@require_GET
def due_next(request):
    """The home page's "due next" list alone, refetched by the page when a live hint names one of its queues."""
    return render(request, "exceptions/_home_due_next_rows.html", {"panel": _due_next_context(request.user)})


@login_required
@require_GET
def queue_list(request):
    """Every queue of the user's roles with its counts; a user with one queue goes straight to it."""
    queues = selectors.queues_for_user(request.user)
    if not queues:
        return _refused(
            request,
            PermissionRefused(
                "You hold no role that owns an exception queue. Ask an operations admin to add you to your team's role."
            ),
        )
    return render(request, "exceptions/queue_list.html", {"panel": {"summaries": selectors.queue_summaries(queues)}})


@login_required
@require_GET
def queue_summary(request):
    """The home and queue-list counts as JSON, refetched by the page when a live hint arrives."""
    queues = selectors.queues_for_user(request.user)
    return JsonResponse({"queues": [selectors.summary_json(s) for s in selectors.queue_summaries(queues)]})


# --- the queue page -----------------------------------------------------------------------


def _user_resolutions(user, types=None) -> list[tuple[str, str]]:
    """Resolutions some type lets one of `user`'s roles apply: what bulk resolve offers."""
    roles = selectors.queue_roles(user)
    seen: dict[str, str] = {}
    for exception_type in types if types is not None else ExceptionType.objects.filter(enabled=True):
        for entry in exception_type.resolutions:
            if set(entry.get("roles") or []) & roles and entry["code"] not in seen:
                seen[entry["code"]] = entry.get("label") or entry["code"].replace("_", " ").capitalize()
    return sorted(seen.items(), key=lambda item: item[1])


@login_required
@require_GET
def queue_detail(request, code: str):
    """A queue's open cases: filter, sort, page, claim, assign and resolve in bulk; rows update live."""
    try:
        queue = selectors.queue_for_user(request.user, code)
    except DomainError as error:
        return _refused(request, error)
    filters = selectors.QueueFilters.from_params(request.GET)
    page = selectors.queue_page(queue, filters, user=request.user)
    choices = selectors.filter_choices(queue)
    context = {
        "queue": queue,
        "page": page,
        "filters": filters,
        "choices": choices,
        "rows": [_row_context(case, filters, page.now, request.user) for case in page.rows],
        "bulk_form": BulkForm(members=choices["members"], resolutions=_user_resolutions(request.user)),
        "query": filters.query_string(),
        "next_url": _queue_url(queue, filters),
        "filter_query": filters.query_string(sort=filters.sort),
        "other_queues": [q for q in selectors.queues_for_user(request.user) if q.pk != queue.pk],
        "sort_links": {
            key.lstrip("-") + ("_desc" if key.startswith("-") else ""): filters.query_string(sort=key)
            for key in selectors.SORTS
        },
    }
    for message in filters.errors.values():
        messages.warning(request, message)
    return render(request, "exceptions/queue_detail.html", context)


def _row_context(case: Case, filters, now, user) -> dict:
    """What one row shows, computed here rather than in template tags: 50 rows render in a few milliseconds."""
    state = selectors.sla_state(case, now)
    detail_url = CASE_URL.replace("0", str(case.pk), 1)
    due, due_kind = selectors.next_deadline(case)
    return {
        "case": case,
        "url": detail_url,
        "claim_url": f"{detail_url}claim/",
        "sla": state,
        "sla_label": SLA_LABELS[state],
        "due": due.isoformat() if due else "",
        "due_kind": due_kind,
        "due_text": _span(due - now) if due else "",
        "age": _span(now - case.created_at),
        "sort_key": selectors.sort_key(case, filters.sort),
        "can_claim": case.status in (Case.Status.OPEN, Case.Status.ASSIGNED, Case.Status.ESCALATED)
        and case.assignee_id != user.pk,
    }


CASE_URL = "/queues/cases/0/"  # checked against the URL configuration in tests (reverse would cost per row)
SLA_LABELS = dict(Case.SlaState.choices)


def _span(delta) -> str:
    """A short duration: "3d 4h", "2h 05m", "12m", or "overdue 5m" for a negative one."""
    seconds = int(delta.total_seconds())
    prefix = "overdue " if seconds < 0 else ""
    seconds = abs(seconds)
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        return f"{prefix}{days}d {hours}h"
    if hours:
        return f"{prefix}{hours}h {minutes:02d}m"
    return f"{prefix}{minutes}m"


def _queue_url(queue, filters) -> str:
    query = filters.query_string()
    return reverse("exceptions:queue-detail", args=[queue.code]) + (f"?{query}" if query else "")


@login_required
@require_GET
def queue_rows(request, code: str):
    """The given cases' rows as the page would show them now, or null when they left the filtered page."""
    try:
        queue = selectors.queue_for_user(request.user, code)
    except DomainError as error:
        return _refused(request, error, as_json=True)
    raw_ids = request.GET.get("ids", "")
    try:
        case_ids = [int(part) for part in raw_ids.split(",") if part.strip()][: selectors.MAX_CHANGES]
    except ValueError:
        return _refused(request, DomainError("ids must be case numbers separated by commas.", status=422), as_json=True)
    filters = selectors.QueueFilters.from_params(request.GET)
    now = timezone.now()
    found = selectors.queue_rows(queue, case_ids, filters, user=request.user, now=now)
    rows = {
        str(case_id): (
            render_to_string(
                "exceptions/_row.html",
                {
                    "row": _row_context(case, filters, now, request.user),
                    "queue": queue,
                    "next_url": _queue_url(queue, filters),
                },
                request=request,
            )
            if case is not None
            else None
        )
        for case_id, case in found.items()
    }
    queue.refresh_from_db(fields=["last_seq"])
    total = selectors.queue_count(queue, filters, user=request.user, now=now)
    return JsonResponse({"queue": queue.code, "rows": rows, "total": total, "last_seq": queue.last_seq})


@login_required
@require_GET
def queue_changes(request, code: str):
    """What changed in the queue after sequence `since`, in order, for a page that saw a gap or reconnected."""
    try:
        queue = selectors.queue_for_user(request.user, code)
    except DomainError as error:
        return _refused(request, error, as_json=True)
    since_raw = request.GET.get("since", "0")
    if not since_raw.isdigit():
        return _refused(
            request,
            DomainError("since must be the last sequence number the page applied (a whole number).", status=422),
            as_json=True,
        )
    limit_raw = request.GET.get("limit", str(selectors.MAX_CHANGES))
    limit = int(limit_raw) if limit_raw.isdigit() else selectors.MAX_CHANGES
    return JsonResponse(selectors.queue_changes_payload(queue, int(since_raw), limit))


@login_required
@require_POST
def queue_bulk(request, code: str):
    """Assign or resolve the ticked cases the same way; each case is re-checked and refusals are listed."""
    from exceptions import services

    try:
        queue = selectors.queue_for_user(request.user, code)
    except DomainError as error:
        return _refused(request, error)
    fallback = reverse("exceptions:queue-detail", args=[queue.code])
    data = request.POST.copy()
    data["case_ids"] = ",".join(request.POST.getlist("case_ids"))  # one value per ticked checkbox
    form = BulkForm(
        data,
        members=selectors.queue_members(queue),
        resolutions=_user_resolutions(request.user),
    )
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return _back(request, fallback)
    data = form.cleaned_data
    allowed_ids, refused = _split_by_access(request.user, data["case_ids"])
    done: list[int] = []
    if allowed_ids:
        try:
            if data["action"] == "assign":
                result = services.cases_bulk_assign(
                    case_ids=allowed_ids, assignee=data["assignee"], actor=_actor(request), reason=data["reason"]
                )
            else:
                result = services.cases_bulk_resolve(
                    case_ids=allowed_ids, resolution=data["resolution"], actor=_actor(request), reason=data["reason"]
                )
        except DomainError as error:
            messages.error(request, error.message)
            return _back(request, fallback)
        result_done, result_refused = _bulk_outcome(result)
        done.extend(result_done)
        refused.update(result_refused)
    verb = (
        "assigned to " + data["assignee"].username if data["action"] == "assign" else f"resolved ({data['resolution']})"
    )
    if done:
        messages.success(request, f"{len(done)} case{'s' if len(done) != 1 else ''} {verb}: " + _ids(done) + ".")
    for case_id, message in sorted(refused.items()):
        messages.error(request, f"Case #{case_id} not changed: {message}")
    if not done and not refused:
        messages.info(request, "Nothing changed.")
    return _back(request, fallback)


def _split_by_access(user, case_ids: list[int]) -> tuple[list[int], dict[int, str]]:
    """Cases in the user's queues, and a refusal for each that is not (or does not exist)."""
    roles = selectors.queue_roles(user)
    found = dict(Case.objects.filter(pk__in=case_ids).values_list("pk", "queue__role"))
    allowed = [case_id for case_id in case_ids if found.get(case_id) in roles]
    refused = {}
    for case_id in case_ids:
        if case_id not in found:
            refused[case_id] = "no such case."
        elif found[case_id] not in roles:
            refused[case_id] = "it is in another role's queue."
    return allowed, refused


def _bulk_outcome(result) -> tuple[list[int], dict[int, str]]:
    """Read the bulk services' answer: done ids and refused {id: message}, as a mapping, pair or object."""
    if isinstance(result, dict):
        return list(result.get("done", [])), dict(result.get("refused", {}))
    if isinstance(result, tuple):
        return list(result[0]), dict(result[1])
    return list(getattr(result, "done", [])), dict(getattr(result, "refused", {}))


def _ids(case_ids) -> str:
    shown = ", ".join(f"#{case_id}" for case_id in list(case_ids)[:20])
    return shown + (f" and {len(case_ids) - 20} more" if len(case_ids) > 20 else "")


# --- the case page ------------------------------------------------------------------------


def _case_actions(case: Case, user) -> dict:
    """Which actions this user may take on this case now (the services re-check everything)."""
    active = case.status in Case.ACTIVE_STATES
    before_work = case.status in (Case.Status.OPEN, Case.Status.ASSIGNED, Case.Status.ESCALATED)
    roles = selectors.queue_roles(user)
    resolutions = [
        (entry["code"], entry.get("label") or entry["code"])
        for entry in case.type.resolutions
        if set(entry.get("roles") or []) & roles
    ]
    return {
        "claim": before_work and case.assignee_id != user.pk,
        "start": before_work,
        "wait": case.status in Case.WORKABLE,
        "resume": case.status == Case.Status.WAITING_EXTERNAL,
        "assign": before_work,
        "route": active,
        "cancel": active,
        "resolutions": resolutions if active else [],
        "comment": True,
    }


def _order_url(number: str) -> str:
    if not number:
        return ""
    try:
        return reverse("orchestration:order-detail", args=[number])
    except NoReverseMatch:
        return ""


def _customer_url(user, subject: dict) -> str:
    """The customer's credit page, for the order a case concerns, when `user` may open it."""
    order = subject.get("order")
    if order is None:
        return ""
    from orchestration.selectors import CREDIT_ROLES

    if not allowed(user, *CREDIT_ROLES):
        return ""
    try:
        return reverse("orchestration:customer-detail", args=[order.customer.code])
    except NoReverseMatch:
        return ""


def _param_fields(case: Case, form: ResolveForm, resolutions) -> list[tuple]:
    """The offered resolutions' extra fields as (resolution, bound field, values to suggest)."""
    offered = dict(resolutions)
    suggestions: dict[str, list[str]] = {}
    if "reassign_carrier" in offered:
        from inventory.selectors import carrier_pickups

        pickups = carrier_pickups(case.warehouse_id)
        suggestions["param_reassign_carrier_carrier"] = sorted({pickup.carrier for pickup in pickups})
        suggestions["param_reassign_carrier_service_level"] = sorted({pickup.service_level for pickup in pickups})
    fields = []
    for code, params in RESOLUTION_PARAMS.items():
        if code not in offered:
            continue
        for name, *_ in params:
            field_name = f"param_{code}_{name}"
            options = suggestions.get(field_name, [])
            if options:
                form.fields[field_name].widget.attrs["list"] = f"{field_name}-options"
            fields.append((code, form[field_name], options))
    return fields


def _render_case(request, case: Case, *, status: int = 200, forms: dict | None = None):
    actions = _case_actions(case, request.user)
    members = selectors.queue_members(case.queue)
    route_queues = list(Queue.objects.exclude(pk=case.queue_id).order_by("name"))
    forms = forms or {}
    resolve_form = forms.get("resolve") or ResolveForm(resolutions=actions["resolutions"])
    now = timezone.now()
    subject = selectors.subject_context(case)
    context = {
        "case": case,
        "now": now,
        "sla": selectors.sla_state(case, now),
        "sla_label": dict(Case.SlaState.choices)[selectors.sla_state(case, now)],
        "facts": selectors.case_facts(case),
        "subject": subject,
        "timeline": selectors.case_timeline(case),
        "actions": actions,
        "reason_form": forms.get("reason") or ReasonForm(),
        "assign_form": forms.get("assign") or AssignForm(members=members),
        "route_form": forms.get("route") or RouteForm(queues=route_queues),
        "resolve_form": resolve_form,
        "comment_form": forms.get("comment") or CommentForm(),
        "failed_action": forms.get("action", ""),
        "param_fields": _param_fields(case, resolve_form, actions["resolutions"]),
        "transition_buttons": [
            ("start", "Start work", actions["start"]),
            ("wait", "Wait on an external party", actions["wait"]),
            ("resume", "Resume", actions["resume"]),
            ("cancel", "Cancel the case", actions["cancel"]),
        ],
        "order_url": _order_url(case.order_number),
        "customer_url": _customer_url(request.user, subject),
    }
    return render(request, "exceptions/case_detail.html", context, status=status)


@login_required
@require_GET
def case_detail(request, pk: int):
    """What happened, what it concerns, what was done so far, and what this user can do about it."""
    try:
        case = selectors.case_for_user(request.user, pk)
    except DomainError as error:
        return _refused(request, error)
    return _render_case(request, case)


def _case_action(request, pk: int, run, *, form_key: str, form=None, success: str):
    """Run one action on a case the user may work: 403 outside their queues, the form again when invalid."""
    try:
        case = selectors.case_for_user(request.user, pk)
    except DomainError as error:
        return _refused(request, error)
    if form is not None and not form.is_valid():
        messages.error(
            request, "Nothing was changed: " + " ".join(e for errors in form.errors.values() for e in errors)
        )
        return _render_case(request, case, status=422, forms={form_key: form, "action": form_key})
    try:
        outcome = run(case, form.cleaned_data if form is not None else {})
    except PermissionRefused as error:
        return _refused(request, error)
    except NotFound as error:
        messages.error(request, error.message)
        return _back(request, reverse("exceptions:case-detail", args=[case.pk]))
    except DomainError as error:
        messages.error(request, f"Nothing was changed: {error.message}")
        if form is not None:  # the form again as it was filled in, to correct rather than retype
            return _render_case(request, case, status=422, forms={form_key: form, "action": form_key})
        return _back(request, reverse("exceptions:case-detail", args=[case.pk]))
    messages.success(request, outcome if isinstance(outcome, str) and outcome else success.format(case=case))
    return _back(request, reverse("exceptions:case-detail", args=[case.pk]))


@login_required
@require_POST
def case_claim(request, pk: int):
    from exceptions import services

    return _case_action(
        request,
        pk,
        lambda case, data: services.case_claim(case=case, actor=_actor(request)),
        form_key="claim",
        success="Case #{case.pk} is yours now.",
    )


TRANSITIONS = {
    "start": ("case_start", "Case #{case.pk} is in progress."),
    "wait": ("case_wait_on_external", "Case #{case.pk} is waiting on an external party; the SLA clock is paused."),
    "resume": ("case_resume", "Case #{case.pk} is back in progress."),
    "cancel": ("case_cancel", "Case #{case.pk} was cancelled."),
}


@login_required
@require_POST
def case_transition(request, pk: int, action: str):
    from exceptions import services

    if action not in TRANSITIONS:
        return _refused(request, NotFound(f"There is no “{action}” action on a case."))
    service_name, success = TRANSITIONS[action]
    service = getattr(services, service_name)
    return _case_action(
        request,
        pk,
        lambda case, data: service(case=case, actor=_actor(request), reason=data["reason"]),
        form_key=action,
        form=ReasonForm(request.POST),
        success=success,
    )


@login_required
@require_POST
def case_assign(request, pk: int):
    from exceptions import services

    try:
        case = selectors.case_for_user(request.user, pk)
    except DomainError as error:
        return _refused(request, error)
    return _case_action(
        request,
        pk,
        lambda case, data: services.case_assign(
            case=case, assignee=data["assignee"], actor=_actor(request), reason=data["reason"]
        ),
        form_key="assign",
        form=AssignForm(request.POST, members=selectors.queue_members(case.queue)),
        success="Case #{case.pk} assigned.",
    )


@login_required
@require_POST
def case_route(request, pk: int):
    from exceptions import services

    try:
        case = selectors.case_for_user(request.user, pk)
    except DomainError as error:
        return _refused(request, error)
    queues = list(Queue.objects.exclude(pk=case.queue_id).order_by("name"))

    def run(case, data):
        services.case_route_to(case=case, queue_code=data["queue"], actor=_actor(request), reason=data["reason"])
        names = {queue.code: queue.name for queue in queues}
        return f"Case #{case.pk} moved to the {names[data['queue']]} queue."

    # After the move the case is usually out of this user's queues: go back to the queue it came from.
    response = _case_action(request, pk, run, form_key="route", form=RouteForm(request.POST, queues=queues), success="")
    if (
        response.status_code == 303
        and not Case.objects.filter(pk=pk, queue__role__in=selectors.queue_roles(request.user)).exists()
    ):
        return HttpResponseRedirect(reverse("exceptions:queue-detail", args=[case.queue.code]), status=303)
    return response


@login_required
@require_POST
def case_resolve(request, pk: int):
    from exceptions import services

    try:
        case = selectors.case_for_user(request.user, pk)
    except DomainError as error:
        return _refused(request, error)
    resolutions = _case_actions(case, request.user)["resolutions"]
    if request.POST.get("resolution") and request.POST["resolution"] not in dict(resolutions):
        if request.POST["resolution"] in case.type.allowed_resolutions:
            message = (
                "Your roles may not apply this resolution to this kind of case; ask a colleague in the role that may."
            )
        else:
            message = f"A {case.type.name} case cannot be resolved as “{request.POST['resolution']}”."
        return _refused(request, PermissionRefused(message))

    def run(case, data):
        resolved = services.case_resolve(
            case=case,
            resolution=data["resolution"],
            actor=_actor(request),
            reason=data["reason"],
            params=form.params(),
        )
        label = dict(resolutions).get(data["resolution"], data["resolution"])
        note = getattr(resolved, "resolution_note", "")
        return f"Case #{case.pk} resolved: {label}." + (f" {note}" if note and note != data["reason"] else "")

    form = ResolveForm(request.POST, resolutions=resolutions)
    return _case_action(request, pk, run, form_key="resolve", form=form, success="")


@login_required
@require_POST
def case_comment(request, pk: int):
    from exceptions import services

    return _case_action(
        request,
        pk,
        lambda case, data: services.case_comment(case=case, actor=_actor(request), body=data["body"]),
        form_key="comment",
        form=CommentForm(request.POST),
        success="Comment added to case #{case.pk}.",
    )
