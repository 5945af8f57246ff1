"""The floor panel: open work per zone with its oldest task, and tasks finished per hour, on the supervisor's home."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestration import selectors
from orchestration.models import Task
from portal.roles import Role
from tests.inventory import factories as stock_factories

pytestmark = pytest.mark.django_db

T = Task.Status
NOW = dt.datetime(2026, 12, 7, 10, 40, tzinfo=dt.UTC)


def task(warehouse, status: str, *, zone: str = "A", created: dt.datetime = NOW, finished=None, done: int = 0) -> Task:
    made = Task.objects.create(kind=Task.Kind.PICK, warehouse=warehouse, zone=zone, quantity=5)
    Task.objects.filter(pk=made.pk).update(status=status, created_at=created, finished_at=finished, done_quantity=done)
    return made


def ago(**delta) -> dt.datetime:
    return NOW - dt.timedelta(**delta)


@pytest.fixture
def warehouse(db):
    return stock_factories.WarehouseFactory(code="FLR", time_zone="Europe/Amsterdam")


def test_open_work_per_zone_with_its_oldest_task(warehouse):
    task(warehouse, T.CREATED, created=ago(minutes=95))
    task(warehouse, T.CREATED, created=ago(minutes=5))
    task(warehouse, T.DISPATCHED, created=ago(minutes=20))
    task(warehouse, T.ACKNOWLEDGED, created=ago(minutes=15))
    task(warehouse, T.IN_PROGRESS, zone="B", created=ago(minutes=12))
    task(warehouse, T.COMPLETED, zone="C", finished=ago(minutes=1))  # done: no open work in C
    task(warehouse, T.CANCELLED, zone="D", finished=ago(minutes=1))

    (floor,) = selectors.floor_activity(now=NOW)

    zones = {zone.zone: zone for zone in floor.zones}
    assert set(zones) == {"A", "B"} and floor.open == 5
    assert (zones["A"].waiting, zones["A"].handed_out, zones["A"].in_progress) == (2, 2, 0)
    assert (zones["A"].oldest_label, zones["A"].stale) == ("1 h 35 min", True)
    assert (zones["B"].in_progress, zones["B"].oldest_label, zones["B"].stale) == (1, "12 min", False)
    assert [zone.zone for zone in floor.zones] == ["A", "B"]  # the busiest zone first


def test_finished_tasks_per_hour_on_the_warehouses_clock(warehouse):
    for minutes in (1, 10, 39):
        task(warehouse, T.COMPLETED, finished=ago(minutes=minutes), done=5)  # this hour (10:00 UTC)
    task(warehouse, T.SHORT, finished=ago(minutes=2), done=3)
    task(warehouse, T.COMPLETED, finished=ago(hours=2), done=4)  # 08:00 UTC
    task(warehouse, T.COMPLETED, finished=ago(hours=2, minutes=5), done=4)
    task(warehouse, T.FAILED, finished=ago(minutes=3))  # not throughput
    task(warehouse, T.CANCELLED, finished=ago(minutes=3))
    task(warehouse, T.COMPLETED, finished=ago(hours=9), done=1)  # before the chart

    (floor,) = selectors.floor_activity(now=NOW)

    assert [hour["label"] for hour in floor.hours] == [f"{h:02d}:00" for h in range(4, 12)]  # Amsterdam: UTC+1
    assert [(hour["completed"], hour["short"]) for hour in floor.hours] == [(0, 0)] * 5 + [(2, 0), (0, 0), (3, 1)]
    assert (floor.last_hour["units"], floor.peak) == (18, 4)


def test_the_floor_costs_three_queries_however_many_warehouses_and_tasks(django_assert_num_queries):
    for code in ("F1", "F2", "F3"):
        site = stock_factories.WarehouseFactory(code=code)
        for status in (T.CREATED, T.IN_PROGRESS, T.COMPLETED, T.SHORT):
            task(site, status, finished=timezone.now() if status in (T.COMPLETED, T.SHORT) else None)
    with django_assert_num_queries(3):
        floors = selectors.floor_activity()
    assert [floor.warehouse.code for floor in floors] == ["F1", "F2", "F3"]
    assert all(floor.open == 2 and sum(hour["completed"] for hour in floor.hours) == 1 for floor in floors)


def test_the_supervisor_sees_the_floor_and_transportation_does_not(client, user_with_role, warehouse):
    task(warehouse, T.CREATED, created=timezone.now() - dt.timedelta(minutes=3))
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))
    page = client.get("/").content.decode()
    assert 'class="panel panel-wide" id="panel-floor"' in page  # the sites side by side
    assert 'data-warehouse="FLR"' in page and 'data-zone="A"' in page
    fragment = client.get(reverse("orchestration:floor"))
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()

    client.force_login(user_with_role(Role.TRANSPORTATION))
    assert 'id="panel-floor"' not in client.get("/").content.decode()
    assert client.get(reverse("orchestration:floor")).status_code == 403
