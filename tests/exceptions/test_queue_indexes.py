"""Each sort of a queue page, forwards and backwards, reads its page in order from an index (no sort of the queue)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.utils import timezone

from exceptions.models import Queue
from exceptions.selectors import SORTS, QueueFilters, _order_by, filtered_cases

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("backwards", [False, True], ids=["next", "previous"])
@pytest.mark.parametrize("sort_key", list(SORTS))
def test_every_queue_sort_is_served_by_an_index(sort_key, backwards, user_with_role):
    queue = Queue.objects.get(code="warehouse_supervisor")
    filters = QueueFilters(sort=sort_key)
    page = filtered_cases(queue, filters, user=user_with_role(), now=timezone.now()).order_by(
        *_order_by(SORTS[sort_key], backwards=backwards)
    )[:51]

    with transaction.atomic(), connection.cursor() as cursor:
        # Make a sort the planner's last resort: it appears only when no index gives this order.
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = page.explain()

    assert "Sort" not in plan, plan
    assert "case_queue_active_" in plan, plan


@pytest.mark.parametrize("read", ["unanswered", "by_resolution"])
def test_the_home_pages_due_next_reads_are_served_by_indexes(read):
    from exceptions.selectors import due_next_reads

    unanswered, by_resolution = due_next_reads([Queue.objects.get(code="finance")], limit=8)
    reads = {"unanswered": unanswered, "by_resolution": by_resolution}

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = reads[read].explain()

    assert "Sort" not in plan, plan
    assert {"unanswered": "case_queue_unanswered_due_idx", "by_resolution": "case_queue_"}[read] in plan, plan
