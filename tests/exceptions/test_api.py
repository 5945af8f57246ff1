"""The queue API for portal users: role scoping in the one error format, filters, cursors, query budgets."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exceptions.models import Case, Queue
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db

CASES = "/api/v1/queues/warehouse_supervisor/cases/"


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    return body["error"]


def test_a_supervisor_lists_their_queues_cases(client, supervisor, make_case):
    first, second = make_case(severity="critical"), make_case()
    client.force_login(supervisor)

    response = client.get(CASES, {"sort": "-priority"})

    assert response.status_code == 200
    body = response.json()
    assert body["queue"] == "warehouse_supervisor" and body["count"] == 2
    assert [row["id"] for row in body["results"]] == [first.pk, second.pk]
    row = body["results"][0]
    assert row["type"] == "short_pick" and row["sla"] == "ok" and row["queue"] == "warehouse_supervisor"
    assert body["last_seq"] == Queue.objects.get(code="warehouse_supervisor").last_seq


def test_another_roles_queue_is_forbidden_in_the_error_format(client, finance_user, make_case):
    make_case()
    client.force_login(finance_user)

    error = assert_error(client.get(CASES), 403, "forbidden")

    assert "Warehouse supervisor" in error["message"]
    assert_error(client.get("/api/v1/queues/warehouse_supervisor/changes/?since=0"), 403, "forbidden")


def test_signed_out_requests_are_refused(client, seeded):
    assert_error(client.get(CASES), 403, "forbidden")


def test_an_unknown_queue_is_not_found(client, supervisor):
    client.force_login(supervisor)

    assert_error(client.get("/api/v1/queues/nowhere/cases/"), 404, "not_found")


def test_bad_filters_are_refused_naming_each_field(client, supervisor):
    client.force_login(supervisor)

    error = assert_error(client.get(CASES, {"severity": "huge", "page_size": "0", "after": "!!"}), 422, "invalid")

    assert set(error["fields"]) == {"severity", "page_size", "after"}


def test_the_queue_list_shows_only_the_users_queues(client, supervisor, make_case):
    make_case()
    client.force_login(supervisor)

    body = client.get("/api/v1/queues/").json()

    assert [(q["code"], q["open"]) for q in body["results"]] == [("warehouse_supervisor", 1)]


def test_next_links_walk_every_case_once(client, supervisor, make_case):
    ids = {make_case().pk for _ in range(7)}
    client.force_login(supervisor)

    seen, url = [], f"{CASES}?page_size=3"
    while url:
        body = client.get(url).json()
        seen.extend(row["id"] for row in body["results"])
        url = body["next"]

    assert sorted(seen) == sorted(ids) and len(seen) == 7


def test_filters_match_the_queue_page(client, supervisor, make_case):
    critical = make_case(severity="critical")
    make_case()
    client.force_login(supervisor)

    body = client.get(CASES, {"severity": "critical", "assignee": "none", "age": "lt1h", "sla": "ok"}).json()

    assert [row["id"] for row in body["results"]] == [critical.pk]


def _queries(client, url, params) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(captured)


def test_the_list_costs_the_same_queries_at_any_page_and_data_size(client, supervisor, make_case):
    client.force_login(supervisor)
    for _ in range(3):
        make_case()
    small = _queries(client, CASES, {"page_size": 2})
    for _ in range(27):
        make_case(severity="high")
    large = _queries(client, CASES, {"page_size": 30})
    filtered = _queries(client, CASES, {"page_size": 30, "severity": "high", "sla": "ok"})

    assert small == large == filtered
    assert large <= 8


def test_changes_since_come_in_order(client, supervisor, make_case):
    start = Queue.objects.get(code="warehouse_supervisor").last_seq
    case = make_case()
    client.force_login(supervisor)

    body = client.get("/api/v1/queues/warehouse_supervisor/changes/", {"since": start}).json()

    assert [(c["seq"], c["case_id"], c["kind"]) for c in body["changes"]] == [(start + 1, case.pk, "added")]
    assert_error(client.get("/api/v1/queues/warehouse_supervisor/changes/", {"since": "x"}), 422, "invalid")


def test_a_resolved_case_leaves_the_list(client, supervisor, make_case):
    from exceptions.services import case_cancel
    from portal.actors import Actor

    gone = make_case()
    case_cancel(case=gone, actor=Actor.for_user(supervisor), reason="duplicate")
    client.force_login(supervisor)

    body = client.get(CASES).json()

    assert body["count"] == 0 and body["results"] == []
    assert Case.objects.get(pk=gone.pk).status == "cancelled"
