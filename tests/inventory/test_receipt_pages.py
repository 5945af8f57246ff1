"""The receipts pages: who may see them, what they show, filters, and a constant number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from inventory import services
from inventory.models import Receipt
from portal.actors import Actor
from portal.roles import Role
from tests.inventory import factories

pytestmark = pytest.mark.django_db

ACTOR = Actor.partner("erp")
LIST = reverse("inventory:receipt-list")


@pytest.fixture
def site(db):
    warehouse = factories.WarehouseFactory(code="DCR", name="Receiving site")
    dock = factories.LocationFactory(warehouse=warehouse, code="DOCK", kind="dock")
    return warehouse, dock


def receipt(site, number: str, lines: list[tuple[str, int]], *, supplier: str = "Bolt & Co", **fields) -> Receipt:
    warehouse, _ = site
    return services.receipt_create(
        number=number,
        warehouse=warehouse,
        supplier=supplier,
        lines=[{"item": factories.ItemFactory(sku=sku), "expected_quantity": quantity} for sku, quantity in lines],
        actor=ACTOR,
        reason="ASN received",
        **fields,
    )


def receive(site, receipt: Receipt, *quantities: int) -> None:
    for line, quantity in zip(receipt.lines.order_by("line_no"), quantities, strict=False):
        services.receipt_receive_line(line=line, quantity=quantity, location=site[1], actor=ACTOR)


@pytest.mark.parametrize(
    "role, status",
    [
        (Role.PROCUREMENT, 200),
        (Role.WAREHOUSE_SUPERVISOR, 200),
        (Role.FINANCE, 200),
        (Role.OPERATIONS_ADMIN, 200),
        (Role.CUSTOMER_SERVICE, 403),
        (Role.IT_SUPPORT, 403),
        (None, 403),
    ],
)
def test_receipts_are_for_procurement_the_dock_and_finance(client, user_with_role, site, role, status):
    receipt(site, "ASN-1", [("BOLT", 10)])
    client.force_login(user_with_role(*([role] if role else []), username=f"u-{role or 'none'}"))
    assert client.get(LIST).status_code == status
    assert client.get(reverse("inventory:receipt-detail", args=["ASN-1"])).status_code == status
    assert ("Receipts" in client.get("/").content.decode()) == (status == 200)


def test_the_list_shows_open_receipts_with_what_arrived_and_filters(client, user_with_role, site):
    expected = receipt(site, "ASN-1", [("BOLT", 10), ("NUT", 5)])
    arriving = receipt(site, "PO-2", [("WASHER", 40)], supplier="Washer World", purchase_order="4711")
    receive(site, arriving, 30)
    closed = receipt(site, "ASN-3", [("SCREW", 100)])
    receive(site, closed, 90)
    services.receipt_close(receipt=closed, actor=ACTOR, reason="Unloaded")
    client.force_login(user_with_role(Role.PROCUREMENT))

    page = client.get(LIST)  # open ones by default, newest first

    rows = {r.number: r for r in page.context["rows"]}
    assert list(rows) == ["PO-2", "ASN-1"]
    assert (rows["ASN-1"].line_count, rows["ASN-1"].expected_units, rows["ASN-1"].received_units) == (2, 15, 0)
    assert (rows["PO-2"].received_units, rows["PO-2"].received_share) == (30, 75)
    html = page.content.decode()
    assert "PO 4711" in html and 'aria-label="30 of 40 arrived"' in html
    assert _numbers(client, {"state": "closed"}) == ["ASN-3"]
    assert _numbers(client, {"state": "all", "q": "washer"}) == ["PO-2"]
    assert _numbers(client, {"state": "all", "on_hold": "1"}) == ["ASN-3"]  # 90 of 100: beyond tolerance
    assert _numbers(client, {"state": "nonsense"}) == ["PO-2", "ASN-1"]  # an unknown state shows the open ones
    assert expected.status == Receipt.Status.EXPECTED


def test_the_detail_shows_lines_against_what_arrived_and_the_changes(client, user_with_role, site):
    closed = receipt(site, "ASN-3", [("SCREW", 100), ("NUT", 5)])
    receive(site, closed, 90, 5)
    services.receipt_close(receipt=closed, actor=Actor.system("dock"), reason="Unloaded")
    client.force_login(user_with_role(Role.FINANCE))

    response = client.get(reverse("inventory:receipt-detail", args=["ASN-3"]))

    assert [(line.item.sku, line.variance) for line in response.context["lines"]] == [("SCREW", -10), ("NUT", 0)]
    statuses = [(h.status, h.history_reason) for h in response.context["history"]]
    assert statuses == [("expected", "ASN received"), ("receiving", "Received"), ("closed", "Unloaded")]
    html = response.content.decode()
    assert "supplier invoice on hold" in html and "-10" in html
    assert client.get(reverse("inventory:receipt-detail", args=["NOPE-1"])).status_code == 404


def test_an_open_receipt_shows_what_is_still_to_come_rather_than_a_variance(client, user_with_role, site):
    arriving = receipt(site, "PO-2", [("WASHER", 40), ("NUT", 5)])
    receive(site, arriving, 30, 7)
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))

    html = client.get(reverse("inventory:receipt-detail", args=["PO-2"])).content.decode()

    assert "Still to come" in html and "Variance" not in html
    assert [line.still_to_come for line in arriving.lines.order_by("line_no")] == [10, 0]  # 2 extra NUTs: nothing due


def _numbers(client, params) -> list[str]:
    return [r.number for r in client.get(LIST, params).context["rows"]]


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return len(captured)


def test_the_pages_cost_the_same_queries_for_few_or_many_receipts_and_lines(client, user_with_role, site):
    client.force_login(user_with_role(Role.PROCUREMENT))
    small = receipt(site, "ASN-1", [("BOLT", 10)])
    _queries(client, LIST)  # warm the session and role caches
    few = _queries(client, LIST)
    small_detail = _queries(client, reverse("inventory:receipt-detail", args=[small.number]))
    for number in range(2, 30):
        receipt(site, f"ASN-{number}", [(f"SKU-{number}-{n}", 5) for n in range(4)])
    big = receipt(site, "ASN-BIG", [(f"BIG-{n}", 5) for n in range(20)])
    receive(site, big, *range(1, 21))
    assert _queries(client, LIST, {"size": 100}) == few
    assert _queries(client, reverse("inventory:receipt-detail", args=[big.number])) == small_detail


def test_procurement_and_finance_see_what_is_inbound_on_their_home_page(client, user_with_role, site):
    receipt(site, "ASN-1", [("BOLT", 10), ("NUT", 5)])
    arriving = receipt(site, "PO-2", [("WASHER", 40)])
    receive(site, arriving, 30)
    short = receipt(site, "ASN-3", [("SCREW", 100)])
    receive(site, short, 90)
    services.receipt_close(receipt=short, actor=ACTOR, reason="Unloaded")  # beyond tolerance: invoice held
    client.force_login(user_with_role(Role.FINANCE))

    page = client.get("/")

    (panel,) = [p for p in page.context["panels"] if p["key"] == "receipts"]
    assert panel["sites"] == [
        {"code": "DCR", "name": "Receiving site", "expected": 1, "receiving": 1, "on_hold": 1, "units_to_come": 25}
    ]
    html = page.content.decode()
    assert 'id="panel-receipts"' in html and "supplier invoices on hold" in html
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE, username="cs"))
    assert 'id="panel-receipts"' not in client.get("/").content.decode()


def test_units_still_to_come_count_each_line_so_an_over_delivery_offsets_nothing(client, user_with_role, site):
    arriving = receipt(site, "PO-9", [("WASHER", 10), ("NUT", 10)])
    receive(site, arriving, 15, 4)  # 5 washers too many, 6 nuts still to come
    client.force_login(user_with_role(Role.PROCUREMENT))

    (panel,) = [p for p in client.get("/").context["panels"] if p["key"] == "receipts"]

    assert panel["sites"][0]["units_to_come"] == 6


def test_the_detail_lists_the_cases_about_the_receipt_linked_for_those_who_work_them(client, user_with_role, site):
    from exceptions.models import Case
    from exceptions.seed import seed_defaults

    seed_defaults()
    short = receipt(site, "ASN-3", [("SCREW", 100), ("NUT", 5)])
    receive(site, short, 90, 5)
    services.receipt_close(receipt=short, actor=ACTOR, reason="Unloaded")  # beyond tolerance: a case
    other = receipt(site, "ASN-4", [("BOLT", 10)])
    case = Case.objects.get(type__code="receiving_variance", subject_id=str(short.pk))
    url = reverse("inventory:receipt-detail", args=["ASN-3"])

    client.force_login(user_with_role(Role.PROCUREMENT))
    html = client.get(url).content.decode()
    assert f'data-case="{case.pk}"' in html and escape(case.summary) in html
    assert f'href="{case.get_absolute_url()}"' in html  # procurement works the case: linked

    client.force_login(user_with_role(Role.FINANCE, username="fin"))
    html = client.get(url).content.decode()
    assert f'data-case="{case.pk}"' in html and f'href="{case.get_absolute_url()}"' not in html  # shown, not linked

    html = client.get(reverse("inventory:receipt-detail", args=[other.number])).content.decode()
    assert "No case has been raised about this receipt." in html and "data-case=" not in html
