"""The exceptions app's part of the order timeline: the order's cases, their history and comments."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from exceptions.models import Case, CaseComment
from portal.timeline import TimelineEntry

KIND = "case"


def _case_url(case_id: int) -> str:
    try:
        return reverse("exceptions:case-detail", args=[case_id])
    except NoReverseMatch:
        return ""


def _title(case: Case, record) -> str:
    label = f"{case.type.name} case #{case.pk}"
    if record.history_type == "+":
        return f"{label} raised in the {case.queue.name} queue: {case.summary}"
    status = record.status
    if status == Case.Status.RESOLVED:
        return f"{label} resolved ({record.resolution_code}): {record.resolution_note}".rstrip(": ")
    if status == Case.Status.AUTO_RESOLVED:
        return f"{label} closed automatically: the cause disappeared"
    if status == Case.Status.CANCELLED:
        return f"{label} cancelled"
    return f"{label} {Case.Status(status).label.lower()}"


def cases_for_order(order) -> list[TimelineEntry]:
    """Every case about the order, each history row and comment as an entry (three queries whatever the size).

    An entry links to its case for those who work the case's queue; others read it without the link.
    """
    cases = {case.pk: case for case in Case.objects.filter(order_number=order.number).select_related("type", "queue")}
    if not cases:
        return []
    entries = []
    history = Case.history.filter(id__in=list(cases)).order_by("history_date", "history_id")
    for record in history:
        case = cases[record.id]
        entries.append(
            TimelineEntry(
                at=record.history_date,
                kind=KIND,
                title=_title(case, record),
                actor=record.history_actor,
                detail=record.history_reason or record.history_change_reason or "",
                url=_case_url(case.pk),
                extra={"case_id": case.pk, "status": record.status, "type": case.type.code},
                url_roles=(case.queue.role,),
            )
        )
    for comment in CaseComment.objects.filter(case_id__in=list(cases)).select_related("author"):
        entries.append(
            TimelineEntry(
                at=comment.created_at,
                kind=KIND,
                title=f"Comment on case #{comment.case_id}",
                actor=f"user:{comment.author.get_username()}",
                detail=comment.body,
                url=_case_url(comment.case_id),
                extra={"case_id": comment.case_id, "comment_id": comment.pk},
                url_roles=(cases[comment.case_id].queue.role,),
            )
        )
    return entries
