"""The queue API for the portal's own users (session auth): their queues and each queue's open cases.

Same filters, sort and keyset pages as the queue page, the same role checks (403 for another
role's queue) and a fixed number of queries per request whatever the page size. Bad filter
values are refused (422, the one error format) rather than ignored as the page does.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from exceptions import selectors
from exceptions.api.serializers import (
    CaseRowSerializer,
    QueueCasesPageSerializer,
    QueueChangesSerializer,
    QueueListSerializer,
    QueueSummarySerializer,
)
from portal.api import ErrorSerializer
from portal.domain import InvalidInput

FILTER_PARAMETERS = [
    OpenApiParameter("type", str, description="Exception type code"),
    OpenApiParameter("severity", str, enum=["low", "medium", "high", "critical"]),
    OpenApiParameter("warehouse", str, description="Warehouse code"),
    OpenApiParameter("sla", str, enum=selectors.SLA_STATES),
    OpenApiParameter("assignee", str, description="“me”, “none” or a user id"),
    OpenApiParameter("age", str, enum=selectors.AGE_KEYS),
    OpenApiParameter("sort", str, enum=list(selectors.SORTS)),
    OpenApiParameter(
        "page_size", int, description=f"1–{selectors.MAX_PAGE_SIZE}, default {selectors.DEFAULT_PAGE_SIZE}"
    ),
    OpenApiParameter("after", str, description="The `next` cursor of the previous page"),
    OpenApiParameter("before", str, description="The `previous` cursor of the following page"),
]

REFUSALS = {
    403: OpenApiResponse(ErrorSerializer, description="Not signed in, or the queue belongs to another role"),
    404: OpenApiResponse(ErrorSerializer, description="No queue with this code"),
    422: OpenApiResponse(ErrorSerializer, description="A filter or cursor value is not valid; see error.fields"),
}


class QueueListView(APIView):
    """The signed-in user's queues with open, breached and at-risk counts and the aging buckets."""

    @extend_schema(responses={200: QueueListSerializer, 403: REFUSALS[403]})
    def get(self, request):
        summaries = selectors.queue_summaries(selectors.queues_for_user(request.user))
        return Response(
            {"results": QueueSummarySerializer([selectors.summary_json(s) for s in summaries], many=True).data}
        )


class QueueCasesView(APIView):
    """One queue's active cases, filtered, sorted and paged by cursor."""

    @extend_schema(parameters=FILTER_PARAMETERS, responses={200: QueueCasesPageSerializer, **REFUSALS})
    def get(self, request, code: str):
        queue = selectors.queue_for_user(request.user, code)
        filters = selectors.QueueFilters.from_params(request.query_params)
        if filters.errors:
            raise InvalidInput(
                "Some filter values are not valid; see fields.",
                fields={key: [message] for key, message in filters.errors.items()},
            )
        now = timezone.now()
        page = selectors.queue_page(queue, filters, user=request.user, now=now)
        base = request.build_absolute_uri(request.path)
        query = filters.query_string()
        return Response(
            {
                "queue": queue.code,
                "last_seq": page.last_seq,
                "count": page.total,
                "next": f"{base}?{query}&after={page.next_cursor}" if page.next_cursor else None,
                "previous": f"{base}?{query}&before={page.previous_cursor}" if page.previous_cursor else None,
                "results": CaseRowSerializer(page.rows, many=True, context={"queue": queue, "now": now}).data,
            }
        )


class QueueChangesView(APIView):
    """The queue's changes after sequence `since`, oldest first: what a live client missed."""

    @extend_schema(
        parameters=[OpenApiParameter("since", int, required=True), OpenApiParameter("limit", int)],
        responses={200: QueueChangesSerializer, **REFUSALS},
    )
    def get(self, request, code: str):
        queue = selectors.queue_for_user(request.user, code)
        since = request.query_params.get("since", "")
        limit = request.query_params.get("limit", str(selectors.MAX_CHANGES))
        if not since.isdigit() or not limit.isdigit():
            raise InvalidInput(
                "since and limit must be whole numbers.",
                fields={"since": ["The last sequence number applied."]}
                if not since.isdigit()
                else {"limit": ["1–500."]},
            )
        return Response(selectors.queue_changes_payload(queue, int(since), int(limit)))
