"""The task list: a supervisor's open work by warehouse, zone, state and kind, the longest waiting first."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestration.models import Task
from portal.roles import Role
from tests.inventory import factories as stock_factories

pytestmark = pytest.mark.django_db

T = Task.Status


def task(warehouse, status: str = T.CREATED, *, zone: str = "A", minutes_old: int = 0, kind=Task.Kind.PICK, **fields):
    location = stock_factories.LocationFactory(warehouse=warehouse, code=f"{zone}-{Task.objects.count():03d}")
    made = Task.objects.create(kind=kind, warehouse=warehouse, zone=zone, location=location, quantity=4)
    created = timezone.now() - dt.timedelta(minutes=minutes_old)
    Task.objects.filter(pk=made.pk).update(status=status, created_at=created, **fields)
    return made


@pytest.fixture
def warehouse(db):
    return stock_factories.WarehouseFactory(code="TSK")


@pytest.fixture
def supervisor_client(client, user_with_role):
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))
    return client


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [task.pk for task in response.context["page"].object_list]


def test_open_work_of_a_zone_the_longest_waiting_first(supervisor_client, warehouse):
    fresh = task(warehouse, minutes_old=2)
    oldest = task(warehouse, T.DISPATCHED, minutes_old=90)
    middle = task(warehouse, T.IN_PROGRESS, minutes_old=30)
    task(warehouse, T.COMPLETED, minutes_old=200, finished_at=timezone.now())
    task(warehouse, zone="B", minutes_old=300)
    task(stock_factories.WarehouseFactory(code="OTH"), minutes_old=400)

    response = supervisor_client.get(reverse("task-list"), {"warehouse": "TSK", "zone": "A", "state": "open"})

    assert listed(response) == [oldest.pk, middle.pk, fresh.pk]
    page = response.content.decode()
    assert page.count('class="badge warn"') == 1  # only the task waiting past an hour is flagged


def test_finished_work_the_latest_first_and_kinds_apart(supervisor_client, warehouse):
    now = timezone.now()
    earlier = task(warehouse, T.SHORT, finished_at=now - dt.timedelta(minutes=20), outcome_note="2 missing")
    later = task(warehouse, T.COMPLETED, finished_at=now - dt.timedelta(minutes=5))
    pack = task(warehouse, T.CREATED, kind=Task.Kind.PACK)
    task(warehouse, T.CREATED)

    assert listed(supervisor_client.get(reverse("task-list"), {"state": "finished"})) == [later.pk, earlier.pk]
    assert listed(supervisor_client.get(reverse("task-list"), {"state": "short"})) == [earlier.pk]
    assert listed(supervisor_client.get(reverse("task-list"), {"kind": "pack"})) == [pack.pk]
    assert "2 missing" in supervisor_client.get(reverse("task-list"), {"state": "short"}).content.decode()


def test_unknown_filter_values_are_ignored_not_errors(supervisor_client, warehouse):
    one = task(warehouse)
    response = supervisor_client.get(reverse("task-list"), {"state": "teleported", "kind": "juggle", "size": "9999"})
    assert listed(response) == [one.pk] and response.context["size"] == 50


@pytest.mark.parametrize("count", [1, 10, 50])
def test_the_list_costs_the_same_queries_whatever_the_page_size(supervisor_client, warehouse, count):
    for index in range(count):
        task(warehouse, minutes_old=index)
    with CaptureQueriesContext(connection) as queries:
        assert len(listed(supervisor_client.get(reverse("task-list"), {"size": "200"}))) == count
    assert len(queries) == 5, [q["sql"][:60] for q in queries.captured_queries]  # user, roles, count, page, warehouses


def test_the_list_is_for_supervisors_and_linked_from_the_floor(client, user_with_role, warehouse):
    task(warehouse, zone="C")
    client.force_login(user_with_role(Role.TRANSPORTATION))
    assert client.get(reverse("task-list")).status_code == 403
    assert f'href="{reverse("task-list")}"' not in client.get("/").content.decode()

    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))
    home = client.get("/").content.decode()
    assert f'href="{reverse("task-list")}"' in home  # in the navigation
    assert f"{reverse('task-list')}?warehouse=TSK&amp;zone=C&amp;state=open" in home  # from the floor's zone row


def test_pages_keep_the_filters(supervisor_client, warehouse):
    for index in range(27):
        task(warehouse, minutes_old=index)
    first = supervisor_client.get(reverse("task-list"), {"warehouse": "TSK", "size": "25"})
    body = first.content.decode()
    assert len(listed(first)) == 25 and "Page 1 of 2" in body
    assert 'href="?warehouse=TSK&amp;size=25&amp;page=2">Next →</a>' in body
    second = supervisor_client.get(reverse("task-list"), {"warehouse": "TSK", "size": "25", "page": "2"})
    assert len(listed(second)) == 2 and "← Previous" in second.content.decode()
