"""One unit's page: who may open it, its status over the day, stoppages, open work and cases, in fixed queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import selectors, services
from automation.models import Equipment
from exceptions.models import Case
from portal.actors import Actor
from portal.roles import Role
from tests.automation import factories

pytestmark = pytest.mark.django_db

WCS = Actor.partner("wcs")
PAGE = "/automation/equipment/{}/"


def _unit_since(warehouse, code: str, *, hours_ago: float, now: dt.datetime, **options) -> Equipment:
    """A unit registered `hours_ago` before `now` (its first record moved back to then)."""
    unit = factories.unit(warehouse, code, now=now, **options)
    registered = now - dt.timedelta(hours=hours_ago)
    Equipment.objects.filter(pk=unit.pk).update(status_changed_at=registered)
    unit.history.update(status_changed_at=registered, history_date=registered)
    unit.refresh_from_db()
    return unit


def _a_day(warehouse, now):
    """Online for a day, a jam 10 h ago cleared after an hour, maintenance 2 h ago for an hour."""
    unit = _unit_since(warehouse, "sorter-1", hours_ago=30, now=now, zone="PACK", kind="sorter")
    supervisor = Actor.system("supervisor")
    services.equipment_fault(
        equipment=unit, kind="jam", code="E42", message="Tote jam at induct 3", now=now - dt.timedelta(hours=10),
        actor=WCS,
    )  # fmt: skip
    services.equipment_set_status(
        equipment=unit, status="online", now=now - dt.timedelta(hours=9), actor=supervisor, reason="Jam cleared"
    )
    services.equipment_set_status(
        equipment=unit, status="maintenance", now=now - dt.timedelta(hours=2), actor=supervisor, reason="Belt check"
    )
    services.equipment_set_status(
        equipment=unit, status="online", now=now - dt.timedelta(hours=1), actor=supervisor, reason="Checked"
    )
    unit.refresh_from_db()
    return unit


@pytest.mark.parametrize(
    "role, status",
    [
        (Role.WAREHOUSE_SUPERVISOR, 200),
        (Role.OPERATIONS_ADMIN, 200),
        (Role.CUSTOMER_SERVICE, 403),
        (Role.IT_SUPPORT, 403),
        (None, 403),
    ],
)
def test_a_unit_page_is_for_supervisors_and_operations_admin(client, user_with_role, warehouse, role, status):
    factories.unit(warehouse, "amr-1", now=timezone.now())
    client.force_login(user_with_role(*([role] if role else []), username=f"u-{role or 'none'}"))
    assert client.get(PAGE.format("amr-1")).status_code == status
    assert client.get(PAGE.format("no-such-unit")).status_code == (404 if status == 200 else 403)


def test_the_day_is_cut_into_stretches_with_the_share_able_to_take_work(warehouse):
    now = timezone.now()
    unit = _a_day(warehouse, now)
    unit.name = "Parcel sorter one"
    unit.save()  # an edit that is not a status change writes history too

    detail = selectors.unit_detail(unit, now=now)

    assert [(span.status, round(span.width, 1)) for span in detail.spans] == [
        ("online", 58.3),  # 24 h ago until the jam, 10 h ago
        ("faulted", 4.2),
        ("online", 29.2),
        ("maintenance", 4.2),
        ("online", 4.2),
    ]
    assert round(sum(span.width for span in detail.spans), 1) == 100.0
    assert detail.available_share == 92  # 22 of 24 hours
    assert detail.stopped_for == "1 h 00 min"
    assert [row.status for row in detail.changes] == ["online", "maintenance", "online", "faulted"]  # newest first
    (fault,) = detail.faults
    assert (fault["fault"].code, fault["lasted"]) == ("E42", "1 h 00 min")


def test_a_unit_added_during_the_day_is_judged_from_then_on(warehouse):
    now = timezone.now()
    unit = _unit_since(warehouse, "amr-new", hours_ago=6, now=now)

    detail = selectors.unit_detail(unit, now=now)

    assert [(span.status, round(span.left, 1), round(span.width, 1)) for span in detail.spans] == [
        ("online", 75.0, 25.0)
    ]
    assert detail.available_share == 100 and detail.stopped_for == ""


def test_the_page_shows_the_strip_the_stoppage_and_the_case_linked_for_the_supervisor(
    client, user_with_role, warehouse
):
    now = timezone.now()
    unit = _a_day(warehouse, now)
    case = Case.objects.get(subject_type="automation.equipment", subject_id=str(unit.pk))
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))

    html = client.get(PAGE.format(unit.code)).content.decode()

    assert html.count('class="span status-') == 5
    assert 'data-fault="' in html and "Tote jam at induct 3" in html
    assert f'data-case="{case.pk}"' in html and f'href="{case.get_absolute_url()}"' in html
    assert "92%" in html and "Take into maintenance" in html

    client.force_login(user_with_role(Role.OPERATIONS_ADMIN, username="ops"))  # no supervisor queue: not linked
    html = client.get(PAGE.format(unit.code)).content.decode()
    assert f'data-case="{case.pk}"' in html and f'href="{case.get_absolute_url()}"' not in html


def test_open_instructions_are_listed_and_an_unacknowledged_one_stands_out(
    client, user_with_role, warehouse, customer, amr_item
):
    now = timezone.now()
    factories.unit(warehouse, "amr-1", now=now)
    task = factories.pick_tasks(factories.released_order(customer, warehouse, [(amr_item.sku, 2)]))[0]
    services.task_handoff(task=task, now=now - dt.timedelta(minutes=5))  # its acknowledgement deadline has passed
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))

    response = client.get(PAGE.format("amr-1"))

    (handoff,) = response.context["unit"].open_handoffs
    assert handoff.task_id == task.pk and handoff.overdue
    html = response.content.decode()
    assert 'class="overdue"' in html and "no acknowledgement" in html
    assert f'href="/orders/{task.order.number}/"' in html


def test_taking_a_unit_into_maintenance_from_its_page_comes_back_to_it(client, user_with_role, warehouse):
    factories.unit(warehouse, "amr-1", now=timezone.now())
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))

    response = client.post(
        "/automation/equipment/amr-1/status/", {"status": "maintenance", "reason": "Battery swap", "back": "unit"}
    )

    assert response.status_code == 302 and response["Location"] == PAGE.format("amr-1")
    assert Equipment.objects.get(code="amr-1").status == "maintenance"


def _page_queries(client, code: str) -> int:
    return _queries_of(client, PAGE.format(code))


def test_the_page_costs_the_same_queries_whatever_the_unit_went_through(
    client, user_with_role, warehouse, customer, amr_item
):
    now = timezone.now()
    factories.unit(warehouse, "amr-1", now=now)
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    _page_queries(client, "amr-1")  # warm the session and role caches
    few = _page_queries(client, "amr-1")
    for minutes in range(60, 0, -10):
        services.equipment_fault(equipment="amr-1", kind="fault", now=now - dt.timedelta(minutes=minutes), actor=WCS)
        services.equipment_set_status(
            equipment="amr-1", status="online", now=now - dt.timedelta(minutes=minutes - 5), actor=WCS, reason="Reset"
        )
    for _ in range(4):
        task = factories.pick_tasks(factories.released_order(customer, warehouse, [(amr_item.sku, 1)]))[0]
        services.task_handoff(task=task, now=now)
    assert _page_queries(client, "amr-1") == few


def test_the_page_refreshes_its_body_from_a_fragment_on_live_hints(client, user_with_role, warehouse):
    unit = factories.unit(warehouse, "amr-1", now=timezone.now())
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    page = client.get(PAGE.format("amr-1")).content.decode()
    fragment_url = PAGE.format("amr-1") + "fragment/"
    assert f'data-fragment-url="{fragment_url}"' in page and 'data-equipment="amr-1"' in page
    assert 'src="/static/automation/board.js"' in page

    services.equipment_set_status(
        equipment=unit, status="maintenance", now=timezone.now(), actor=WCS, reason="Battery swap"
    )
    fragment = client.get(fragment_url)

    html = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in html
    assert "Maintenance</span> since" in html and "Battery swap" in html and "Back online" in html
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE, username="cs"))
    assert client.get(fragment_url).status_code == 403


def test_the_supervisors_home_shows_the_units_not_online_worst_first(client, user_with_role, warehouse):
    now = timezone.now()
    for code in ("amr-1", "amr-2", "amr-3", "amr-4"):
        factories.unit(warehouse, code, now=now)
    supervisor = Actor.system("supervisor")
    services.equipment_set_status(equipment="amr-2", status="maintenance", now=now, actor=supervisor, reason="Service")
    services.equipment_fault(equipment="amr-3", kind="jam", code="J1", message="Wheel blocked", now=now, actor=WCS)
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))

    page = client.get("/")

    (panel,) = [p for p in page.context["panels"] if p["key"] == "equipment"]
    assert [row["unit"].code for row in panel["attention"]] == ["amr-3", "amr-2"]  # stopped before maintenance
    assert (panel["counts"]["online"], panel["stopped"], panel["total"]) == (2, 1, 4)
    html = page.content.decode()
    assert 'href="/automation/equipment/amr-3/"' in html and 'data-refresh-url="/automation/equipment/panel/"' in html
    alone = client.get("/automation/equipment/panel/")
    assert alone.status_code == 200 and "amr-3" in alone.content.decode() and "<html" not in alone.content.decode()

    client.force_login(user_with_role(Role.CUSTOMER_SERVICE, username="cs"))
    assert not [p for p in client.get("/").context["panels"] if p["key"] == "equipment"]
    assert client.get("/automation/equipment/panel/").status_code == 403


def test_the_home_panel_costs_the_same_queries_for_few_or_many_units(client, user_with_role, warehouse):
    now = timezone.now()
    factories.unit(warehouse, "amr-1", now=now)
    services.equipment_fault(equipment="amr-1", kind="jam", now=now, actor=WCS)  # one stopped unit to list
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    client.get("/automation/equipment/panel/")  # warm the session and role caches
    few = _queries_of(client, "/automation/equipment/panel/")
    for index in range(2, 15):
        factories.unit(warehouse, f"amr-{index}", now=now)
        services.equipment_fault(equipment=f"amr-{index}", kind="fault", now=now, actor=WCS)
    assert _queries_of(client, "/automation/equipment/panel/") == few


def _queries_of(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_strip_s_hour_labels_leave_its_right_end_to_the_now_label():
    now = dt.datetime(2026, 12, 7, 9, 35, tzinfo=dt.UTC)

    ticks = selectors._hour_ticks(now - dt.timedelta(hours=24), now, zone="UTC")

    # Every third hour of the day, placed along the 24 hours; 09:00, 35 minutes before now, would sit under "now".
    assert [tick["label"] for tick in ticks] == ["12:00", "15:00", "18:00", "21:00", "00:00", "03:00", "06:00"]
    assert ticks[0]["left"] == pytest.approx(100 * (2 * 60 + 25) / (24 * 60), abs=0.001)
