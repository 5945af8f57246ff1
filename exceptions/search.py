"""The top bar's search, for cases by number ("#123" or "123"), in the queues the user works."""

from __future__ import annotations

from exceptions.models import Case
from exceptions.selectors import queue_roles
from portal.search import Hit


def find(term: str, user) -> list[Hit]:
    number = term.removeprefix("#").strip()
    if not number.isdigit() or len(number) > 18:
        return []
    case = Case.objects.select_related("type", "queue").filter(pk=int(number)).first()
    if case is None or case.queue.role not in queue_roles(user):
        return []
    return [
        Hit(
            "Case",
            f"#{case.pk}",
            case.get_absolute_url(),
            f"{case.type.name} · {case.summary} · {case.get_status_display()}",
            exact=True,
        )
    ]
