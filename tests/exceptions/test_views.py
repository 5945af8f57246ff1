"""The queue pages: role scoping (403 on every view and action), filters, keyset pages, query budgets,
actions with a required reason (POST-redirect-GET) and bulk actions that re-check each case."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from exceptions.models import Case, Queue
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db

SUPERVISOR_QUEUE = "warehouse_supervisor"


def queue_url(code=SUPERVISOR_QUEUE, **params):
    from django.utils.http import urlencode

    url = reverse("exceptions:queue-detail", args=[code])
    return f"{url}?{urlencode(params)}" if params else url


def case_url(case, action=None):
    if action is None:
        return reverse("exceptions:case-detail", args=[case.pk])
    if action in ("claim", "assign", "route", "resolve", "comment"):
        return reverse(f"exceptions:case-{action}", args=[case.pk])
    return reverse("exceptions:case-transition", args=[case.pk, action])


def shown_ids(response) -> list[int]:
    return [row["case"].pk for row in response.context["rows"]]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- role scoping ----------------------------------------------------------------------------


def test_a_supervisor_sees_their_queue_with_its_cases(client, supervisor, make_case):
    first, second = make_case(), make_case()
    client.force_login(supervisor)

    response = client.get(queue_url())

    assert response.status_code == 200
    assert set(shown_ids(response)) == {first.pk, second.pk}
    assert response.context["page"].total == 2
    assert f'data-seq="{Queue.objects.get(code=SUPERVISOR_QUEUE).last_seq}"' in response.content.decode()


@pytest.mark.parametrize(
    "view",
    ["queue-detail", "queue-rows", "queue-changes"],
)
def test_another_roles_queue_is_refused(client, finance_user, make_case, view):
    make_case()
    client.force_login(finance_user)

    response = client.get(reverse(f"exceptions:{view}", args=[SUPERVISOR_QUEUE]) + "?since=0&ids=1")

    assert response.status_code == 403


def test_another_roles_case_page_is_refused_and_says_what_to_do(client, finance_user, make_case):
    case = make_case()
    client.force_login(finance_user)

    response = client.get(case_url(case))

    assert response.status_code == 403
    assert "another role" in response.content.decode()
    assert "Go to your queues" in response.content.decode()


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("claim", {}),
        ("start", {"reason": "mine now"}),
        ("wait", {"reason": "asked the carrier"}),
        ("cancel", {"reason": "duplicate"}),
        ("resolve", {"resolution": "backorder", "reason": "no stock"}),
        ("comment", {"body": "looking"}),
        ("route", {"queue": "finance", "reason": "theirs"}),
    ],
)
def test_every_action_on_another_roles_case_is_refused_and_changes_nothing(
    client, finance_user, make_case, action, data
):
    case = make_case()
    before = Case.objects.values().get(pk=case.pk)
    client.force_login(finance_user)

    response = client.post(case_url(case, action), data)

    assert response.status_code == 403
    assert Case.objects.values().get(pk=case.pk) == before
    assert not case.comments.exists()


def test_bulk_on_another_roles_queue_is_refused(client, finance_user, make_case):
    case = make_case()
    client.force_login(finance_user)

    response = client.post(
        reverse("exceptions:queue-bulk", args=[SUPERVISOR_QUEUE]),
        {"action": "assign", "case_ids": [case.pk], "assignee": finance_user.pk, "reason": "mine"},
    )

    assert response.status_code == 403
    assert Case.objects.get(pk=case.pk).assignee_id is None


def test_an_unknown_queue_is_not_found(client, supervisor):
    client.force_login(supervisor)

    assert client.get(queue_url("nonsense")).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client, make_case):
    response = client.get(queue_url())

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- filters, sorting, pages, query budget ----------------------------------------------------


def test_filters_narrow_the_list(client, supervisor, other_supervisor, make_case):
    critical = make_case(severity="critical")
    mine = make_case()
    make_case()
    from exceptions.services import case_claim
    from portal.actors import Actor

    case_claim(case=mine, actor=Actor.for_user(supervisor))
    client.force_login(supervisor)

    assert shown_ids(client.get(queue_url(severity="critical"))) == [critical.pk]
    assert shown_ids(client.get(queue_url(assignee="me"))) == [mine.pk]
    assert mine.pk not in shown_ids(client.get(queue_url(assignee="none")))
    assert shown_ids(client.get(queue_url(type="damaged_stock"))) == []
    assert len(shown_ids(client.get(queue_url(age="lt1h")))) == 3
    assert shown_ids(client.get(queue_url(age="gt24h"))) == []


def test_sla_filter_finds_breached_cases(client, supervisor, make_case):
    late = make_case()
    make_case()
    Case.objects.filter(pk=late.pk).update(resolution_due_at=timezone.now() - dt.timedelta(minutes=5))
    client.force_login(supervisor)

    response = client.get(queue_url(sla="breached"))

    assert shown_ids(response) == [late.pk]
    assert response.context["rows"][0]["sla"] == "breached"
    assert "sla-breached" in response.content.decode()


def test_a_bad_filter_value_is_ignored_with_a_message(client, supervisor, make_case):
    make_case()
    client.force_login(supervisor)

    response = client.get(queue_url(severity="apocalyptic", sort="sideways", after="%%%"))

    assert response.status_code == 200
    assert len(shown_ids(response)) == 1
    text = " ".join(messages_of(response))
    assert "Unknown severity" in text and "Unknown sort" in text and "page link" in text


@pytest.mark.parametrize("sort", ["due", "-due", "-priority", "raised", "-raised"])
def test_keyset_pages_cover_every_case_once_in_order(client, supervisor, make_case, sort):
    cases = [
        make_case(severity=severity) for severity in ["low", "high", "medium", "critical", "high", "low", "medium"]
    ]
    Case.objects.filter(pk=cases[2].pk).update(resolution_due_at=None)  # a case without a clock sorts last
    client.force_login(supervisor)

    seen, cursor = [], None
    while True:
        params = {"sort": sort, "page_size": 3, **({"after": cursor} if cursor else {})}
        response = client.get(queue_url(**params))
        seen.extend(shown_ids(response))
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
    everything = client.get(queue_url(sort=sort, page_size=50))
    assert seen == shown_ids(everything)
    assert sorted(seen) == sorted(case.pk for case in cases)
    assert shown_ids(everything)[-1] == cases[2].pk or sort in ("raised", "-raised", "-priority")

    # and back again
    last_page = client.get(queue_url(sort=sort, page_size=3, after=response.context["page"].previous_cursor or ""))
    before = last_page.context["page"].previous_cursor
    if before:
        previous = client.get(queue_url(sort=sort, page_size=3, before=before))
        index = seen.index(shown_ids(last_page)[0])
        assert shown_ids(previous) == seen[max(0, index - 3) : index]


def _queries_for(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_the_queue_page_costs_the_same_queries_whatever_the_page_and_data_size(client, supervisor, make_case):
    client.force_login(supervisor)
    for _ in range(4):
        make_case()
    small = _queries_for(client, queue_url(page_size=2))
    for _ in range(26):
        make_case(warehouse=None, severity="high")
    large = _queries_for(client, queue_url(page_size=25))
    filtered = _queries_for(client, queue_url(page_size=25, severity="high", sla="ok", age="lt1h"))

    assert small == large == filtered
    assert large <= 14


def test_the_queue_page_stays_within_its_query_budget(client, supervisor, make_case, django_assert_max_num_queries):
    for _ in range(30):
        make_case()
    client.force_login(supervisor)

    with django_assert_max_num_queries(14):
        response = client.get(queue_url(page_size=30))
    assert len(shown_ids(response)) == 30


# --- live support endpoints -------------------------------------------------------------------


def test_changes_since_a_sequence_come_in_order(client, supervisor, make_case):
    queue = Queue.objects.get(code=SUPERVISOR_QUEUE)
    start = queue.last_seq
    first, second = make_case(), make_case()
    client.force_login(supervisor)

    data = client.get(reverse("exceptions:queue-changes", args=[SUPERVISOR_QUEUE]) + f"?since={start}").json()

    assert [change["seq"] for change in data["changes"]] == [start + 1, start + 2]
    assert [change["case_id"] for change in data["changes"]] == [first.pk, second.pk]
    assert data["last_seq"] == start + 2 and data["has_more"] is False


def test_changes_with_a_bad_since_answer_in_the_error_format(client, supervisor):
    client.force_login(supervisor)

    response = client.get(reverse("exceptions:queue-changes", args=[SUPERVISOR_QUEUE]) + "?since=yesterday")

    assert response.status_code == 422
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_rows_endpoint_gives_html_for_cases_on_the_page_and_null_for_gone_ones(client, supervisor, make_case):
    from exceptions.services import case_cancel
    from portal.actors import Actor

    shown, gone = make_case(), make_case()
    case_cancel(case=gone, actor=Actor.for_user(supervisor), reason="duplicate")
    client.force_login(supervisor)

    data = client.get(reverse("exceptions:queue-rows", args=[SUPERVISOR_QUEUE]) + f"?ids={shown.pk},{gone.pk}").json()

    assert f'data-case="{shown.pk}"' in data["rows"][str(shown.pk)]
    assert data["rows"][str(gone.pk)] is None
    assert data["total"] == 1


# --- actions ----------------------------------------------------------------------------------


def test_claim_redirects_back_with_the_outcome(client, supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.post(case_url(case, "claim"), {"next": queue_url()}, follow=True)

    assert response.redirect_chain == [(queue_url(), 303)]
    assert Case.objects.get(pk=case.pk).assignee == supervisor
    assert any("yours" in message for message in messages_of(response))


def test_an_action_without_a_reason_changes_nothing_and_keeps_the_form(client, supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.post(case_url(case, "cancel"), {"reason": "  "})

    assert response.status_code == 422
    assert Case.objects.get(pk=case.pk).status == Case.Status.OPEN
    assert "Give a reason" in response.content.decode()


def test_a_refused_transition_says_why_and_changes_nothing(client, supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.post(case_url(case, "resume"), {"reason": "back"}, follow=True)

    assert Case.objects.get(pk=case.pk).status == Case.Status.OPEN
    assert any(message.startswith("Nothing was changed") for message in messages_of(response))


def test_the_case_page_offers_only_this_users_actions(client, supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.get(case_url(case))

    assert response.status_code == 200
    codes = [code for code, _ in response.context["actions"]["resolutions"]]
    assert "reallocate" in codes and "release_hold" not in codes
    body = response.content.decode()
    assert case.summary in body and "Claim it" in body and "Picker confirmed short" in body


def test_a_resolution_of_another_role_is_refused(client, supervisor, make_case):
    case = make_case("credit_hold", subject_type="orchestration.order")
    Case.objects.filter(pk=case.pk).update(queue=Queue.objects.get(code=SUPERVISOR_QUEUE))
    client.force_login(supervisor)

    response = client.post(case_url(case, "resolve"), {"resolution": "release_hold", "reason": "paid"})

    assert response.status_code == 403
    assert Case.objects.get(pk=case.pk).status == Case.Status.OPEN


def test_a_comment_appears_on_the_timeline(client, supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.post(case_url(case, "comment"), {"body": "Checked the reserve location"}, follow=True)

    assert response.status_code == 200
    assert any(item.detail == "Checked the reserve location" for item in response.context["timeline"])


def test_routing_away_goes_back_to_the_queue(client, supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.post(case_url(case, "route"), {"queue": "customer_service", "reason": "customer decides"})

    assert response.status_code == 303
    assert response["Location"] == queue_url()
    assert Case.objects.get(pk=case.pk).queue.code == "customer_service"


# --- bulk -------------------------------------------------------------------------------------


def test_bulk_assign_re_checks_each_case_and_reports_refusals(client, supervisor, other_supervisor, make_case):
    own = [make_case(), make_case()]
    foreign = make_case("credit_hold", subject_type="orchestration.order")  # the finance queue
    client.force_login(supervisor)

    response = client.post(
        reverse("exceptions:queue-bulk", args=[SUPERVISOR_QUEUE]),
        {
            "action": "assign",
            "case_ids": [own[0].pk, own[1].pk, foreign.pk, 99_999_999],
            "assignee": other_supervisor.pk,
            "reason": "Sid covers aisle A",
        },
        follow=True,
    )

    assert {c.assignee_id for c in Case.objects.filter(pk__in=[c.pk for c in own])} == {other_supervisor.pk}
    assert Case.objects.get(pk=foreign.pk).assignee_id is None
    text = messages_of(response)
    assert any("2 cases assigned" in message for message in text)
    assert any(f"#{foreign.pk} not changed" in message and "another role" in message for message in text)
    assert any("#99999999 not changed" in message for message in text)


def test_bulk_without_a_reason_changes_nothing(client, supervisor, other_supervisor, make_case):
    case = make_case()
    client.force_login(supervisor)

    response = client.post(
        reverse("exceptions:queue-bulk", args=[SUPERVISOR_QUEUE]),
        {"action": "assign", "case_ids": [case.pk], "assignee": other_supervisor.pk, "reason": ""},
        follow=True,
    )

    assert Case.objects.get(pk=case.pk).assignee_id is None
    assert any("reason" in message for message in messages_of(response))


# --- home -------------------------------------------------------------------------------------


def test_home_shows_the_users_queues_with_counts_and_aging(client, supervisor, make_case):
    late = make_case()
    make_case()
    Case.objects.filter(pk=late.pk).update(
        resolution_due_at=timezone.now() - dt.timedelta(minutes=1), created_at=timezone.now() - dt.timedelta(hours=2)
    )
    client.force_login(supervisor)

    response = client.get(reverse("home"))

    body = response.content.decode()
    assert 'data-queue="warehouse_supervisor"' in body and 'data-queue="finance"' not in body
    summary = client.get(reverse("exceptions:queue-summary")).json()["queues"]
    assert [(s["code"], s["open"], s["breached"]) for s in summary] == [("warehouse_supervisor", 2, 1)]
    assert {age["key"]: age["count"] for age in summary[0]["ages"]} == {"lt1h": 1, "1to4h": 1, "4to24h": 0, "gt24h": 0}


def test_home_lists_what_falls_due_next_in_the_users_queues_only(client, supervisor, make_case):
    now = timezone.now()
    later, overdue, soon, unanswered = make_case(), make_case(), make_case(), make_case()
    waiting = make_case()  # its clock is paused while it waits on the customer
    finance_case = make_case("credit_hold", subject_type="orchestration.order")
    for case, minutes in [(later, 300), (overdue, -5), (soon, 20), (waiting, -60), (finance_case, -90)]:
        Case.objects.filter(pk=case.pk).update(
            first_responded_at=now - dt.timedelta(hours=1), resolution_due_at=now + dt.timedelta(minutes=minutes)
        )
    # nobody answered this one: its clock shows the answer deadline (in 10 min), not the resolution (in 2 days)
    Case.objects.filter(pk=unanswered.pk).update(
        first_response_due_at=now + dt.timedelta(minutes=10), resolution_due_at=now + dt.timedelta(days=2)
    )
    Case.objects.filter(pk=waiting.pk).update(paused_at=now, status=Case.Status.WAITING_EXTERNAL)
    client.force_login(supervisor)

    home = client.get(reverse("home"))
    fragment = client.get(reverse("exceptions:due-next"))

    panel = next(panel for panel in home.context["panels"] if panel["key"] == "due_next")
    expected = [overdue.pk, unanswered.pk, soon.pk, later.pk]
    assert [row["case"].pk for row in panel["rows"]] == expected
    assert [(row["sla"], row["due_kind"]) for row in panel["rows"]][:2] == [
        (Case.SlaState.BREACHED, "resolve"),
        (Case.SlaState.OK, "answer"),
    ]
    assert panel["queue_codes"] == "warehouse_supervisor"
    assert f"#{finance_case.pk}<" not in home.content.decode()
    assert [row["case"].pk for row in fragment.context["panel"]["rows"]] == expected
    assert "<html" not in fragment.content.decode()  # the rows alone, to replace the panel's content


def test_the_home_page_stays_within_its_query_budget(client, supervisor, make_case, django_assert_max_num_queries):
    from orchestration.models import Order, Task
    from tests.orchestration import factories as orders

    for _ in range(12):
        make_case()
    for code in ("H1", "H2"):  # something on every panel: the floor and today's pickups too
        warehouse = orders.WarehouseFactory(code=code)
        orders.stock(orders.ItemFactory(sku=f"{code}-BOX"), orders.LocationFactory(warehouse=warehouse), 50)
        for _ in range(3):
            order = orders.processed_order(orders.CustomerFactory(code="home"), warehouse, [(f"{code}-BOX", 1)])
            Task.objects.filter(order=order).update(status=Task.Status.COMPLETED, finished_at=timezone.now())
            Order.objects.filter(pk=order.pk).update(status=Order.Status.PICKING)
    client.force_login(supervisor)

    # session, user, roles, queues, counts, cases due next (7 in all); the floor and the cutoff board, 3 each;
    # the equipment panel, 2 (its units per status and those not online)
    with django_assert_max_num_queries(15):
        response = client.get(reverse("home"))
    panels = {panel["key"]: panel for panel in response.context["panels"]}
    assert len(panels["due_next"]["rows"]) == 8
    assert [sum(hour["completed"] for hour in floor.hours) for floor in panels["floor"]["floors"]] == [3, 3]
    assert [row.picking for row in panels["cutoffs"]["rows"]] == [3, 3]


def test_the_due_next_list_needs_a_signed_in_user(client):
    response = client.get(reverse("exceptions:due-next"))

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_user_without_a_queue_role_is_told_what_to_do(client, user_with_role):
    from portal.roles import Role

    client.force_login(user_with_role(Role.OPERATIONS_ADMIN))

    response = client.get(reverse("exceptions:queue-list"))

    assert response.status_code == 403
    assert "operations admin" in response.content.decode()


def test_row_links_follow_the_url_configuration():
    from exceptions.views import CASE_URL

    assert reverse("exceptions:case-detail", args=[0]) == CASE_URL
    assert reverse("exceptions:case-claim", args=[0]) == f"{CASE_URL}claim/"


def test_the_case_page_links_to_the_order_timeline(client, supervisor, make_case):
    case = make_case(order_number="SO-4711")
    client.force_login(supervisor)

    response = client.get(case_url(case))

    assert f'href="{reverse("orchestration:order-detail", args=["SO-4711"])}"' in response.content.decode()


def test_the_case_page_states_the_raisers_facts_in_words_without_database_ids(client, supervisor, make_case):
    case = make_case(
        context={"sku": "SKU-7", "line_no": 3, "shortfall": 1, "task_id": 54, "order_line_id": 53,
                 "allows_substitution": True, "allows_split_shipment": False, "missing": ["street", "city"],
                 "order_status": "on_hold", "lines": [{"line_no": 1}], "cutoff": "2026-12-07T09:23:00+01:00",
                 "raised": "2026-12-07T08:00:00+00:00", "note": "Tea at 10", "sent": "2026-13-45T10:00"},
    )  # fmt: skip
    client.force_login(supervisor)

    response = client.get(case_url(case))

    facts = dict(response.context["facts"])
    assert {label: facts.get(label) for label in ["SKU", "Line", "Shortfall", "Allows substitution"]} == {
        "SKU": "SKU-7",
        "Line": "3",
        "Shortfall": "1",
        "Allows substitution": "Yes",
    }
    assert facts["Allows split shipment"] == "No"
    assert (facts["Missing"], facts["Order status"]) == ("street, city", "on hold")
    assert facts["Lines"] == '[{"line_no": 1}]'  # structured context stays readable as JSON
    # A moment reads on the clock it was recorded in (the warehouse's, for a cutoff), to the minute.
    assert (facts["Cutoff"], facts["Raised"], facts["Note"], facts["Sent"]) == (
        "2026-12-07 09:23 (UTC+01:00)",
        "2026-12-07 08:00 (UTC)",
        "Tea at 10",
        "2026-13-45T10:00",  # not a moment after all: as recorded
    )
    assert not {"Task id", "Order line id"} & set(facts)
    assert "Task id" not in response.content.decode()


def test_bulk_resolve_applies_the_same_resolution_and_refuses_cases_whose_type_lacks_it(client, supervisor, make_case):
    faults = [make_case("automation_fault", subject_type="automation.equipment") for _ in range(2)]
    short = make_case()  # a short pick cannot be "acknowledged"
    client.force_login(supervisor)

    response = client.post(
        reverse("exceptions:queue-bulk", args=[SUPERVISOR_QUEUE]),
        {
            "action": "resolve",
            "case_ids": [faults[0].pk, faults[1].pk, short.pk],
            "resolution": "acknowledge",
            "reason": "Sorter restarted, jam cleared",
        },
        follow=True,
    )

    assert {c.status for c in Case.objects.filter(pk__in=[c.pk for c in faults])} == {Case.Status.RESOLVED}
    assert Case.objects.get(pk=short.pk).status == Case.Status.OPEN
    text = messages_of(response)
    assert any("2 cases resolved" in message for message in text)
    assert any(f"#{short.pk} not changed" in message for message in text)


def test_the_case_page_stays_within_its_query_budget(client, supervisor, make_case, django_assert_max_num_queries):
    case = make_case(order_number="SO-1")
    for number in range(5):
        from exceptions.services import case_comment
        from portal.actors import Actor

        case_comment(case=case, actor=Actor.for_user(supervisor), body=f"note {number}")
    client.force_login(supervisor)

    with django_assert_max_num_queries(25):
        response = client.get(case_url(case))
    assert response.status_code == 200
