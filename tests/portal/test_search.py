"""The top bar's search: one exact match opens, several are listed, and nobody finds what they may not open."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exceptions.models import Case
from exceptions.seed import seed_defaults
from inventory import services as inventory
from orchestration.models import Order
from portal.actors import Actor
from portal.roles import Role
from tests.automation import factories as unit_factories
from tests.inventory import factories as stock_factories
from tests.orchestration import factories

pytestmark = pytest.mark.django_db

SEARCH = "/search/"


@pytest.fixture
def world(db):
    seed_defaults()
    warehouse = stock_factories.WarehouseFactory(code="DCS")
    location = stock_factories.LocationFactory(warehouse=warehouse, code="A-01", zone="A", pick_sequence=10)
    stock_factories.stock(stock_factories.ItemFactory(sku="TAPE-50", description="Packing tape"), location, 100)
    stock_factories.ItemFactory(sku="TAPE-75", description="Wide tape")
    customer = factories.CustomerFactory(code="acme", name="Acme Retail")
    order = factories.processed_order(customer, warehouse, [("TAPE-50", 2)], external_ref="PO-4711")
    held_for = factories.CustomerFactory(code="tight", name="Tight Ltd", credit_limit=Decimal("0"))
    held = factories.processed_order(held_for, warehouse, [("TAPE-50", 1)], external_ref="PO-9000")
    assert held.status == Order.Status.CREDIT_HOLD
    receipt = inventory.receipt_create(
        number="ASN-77",
        warehouse=warehouse,
        supplier="Bolt & Co",
        purchase_order="4500123",
        lines=[{"item": stock_factories.ItemFactory(sku="BOLT"), "expected_quantity": 5}],
        actor=Actor.system("test"),
        reason="ASN",
    )
    unit = unit_factories.unit(warehouse, "sorter-1", zone="PACK", kind="sorter", now=timezone.now())
    return {"order": order, "held": held, "receipt": receipt, "unit": unit, "customer": customer}


def _signed_in(client, user_with_role, *roles):
    client.force_login(user_with_role(*roles, username="-".join(r.value for r in roles) or "nobody"))
    return client


@pytest.mark.parametrize(
    "term, role, opens",
    [
        ("so{number}", Role.CUSTOMER_SERVICE, "/orders/{number}/"),  # any case of the number
        ("PO-4711", Role.FINANCE, "/orders/{number}/"),  # the partner's reference
        ("asn-77", Role.PROCUREMENT, "/inventory/receipts/ASN-77/"),  # numbers as typed or in capitals
        ("4500123", Role.PROCUREMENT, "/inventory/receipts/ASN-77/"),  # by purchase order
        ("tape-50", Role.WAREHOUSE_SUPERVISOR, "/inventory/stock/?q=TAPE-50"),
        ("sorter-1", Role.WAREHOUSE_SUPERVISOR, "/automation/equipment/sorter-1/"),
        ("ACME", Role.FINANCE, "/orders/customers/acme/"),
    ],
)
def test_one_exact_match_opens_straight_away(client, user_with_role, world, term, role, opens):
    number = world["order"].number.removeprefix("SO")
    response = _signed_in(client, user_with_role, role).get(SEARCH, {"q": term.format(number=number)})
    assert response.status_code == 302
    assert response["Location"] == opens.format(number=world["order"].number)


def test_a_case_opens_by_its_number_for_the_role_that_works_it(client, user_with_role, world):
    case = Case.objects.get(type__code="credit_hold", order_number=world["held"].number)
    finance = _signed_in(client, user_with_role, Role.FINANCE)
    assert finance.get(SEARCH, {"q": f"#{case.pk}"})["Location"] == case.get_absolute_url()
    supervisor = _signed_in(client, user_with_role, Role.WAREHOUSE_SUPERVISOR)
    response = supervisor.get(SEARCH, {"q": f"#{case.pk}"})
    assert response.status_code == 200 and response.context["hits"] == []  # not their queue: not found


def test_several_matches_are_listed_with_what_each_is(client, user_with_role, world):
    response = _signed_in(client, user_with_role, Role.WAREHOUSE_SUPERVISOR).get(SEARCH, {"q": "tape"})
    assert response.status_code == 200
    assert [(hit.kind, hit.label) for hit in response.context["hits"]] == [("Item", "TAPE-50"), ("Item", "TAPE-75")]
    assert "Wide tape" in response.content.decode()


def test_nobody_finds_what_their_roles_may_not_open(client, user_with_role, world):
    it_support = _signed_in(client, user_with_role, Role.IT_SUPPORT)
    for term in ["PO-4711", world["order"].number, "ASN-77", "TAPE-50", "sorter-1", "acme"]:
        response = it_support.get(SEARCH, {"q": term})
        assert response.status_code == 200 and response.context["hits"] == [], term
        assert "Nothing you may open matches" in response.content.decode()
    transport = _signed_in(client, user_with_role, Role.TRANSPORTATION)  # orders yes, customers' credit no
    assert transport.get(SEARCH, {"q": "acme"}).context["hits"] == []
    assert transport.get(SEARCH, {"q": "PO-4711"}).status_code == 302


@pytest.mark.parametrize("term", ["", "   ", "x" * 500, "\x00", "#", "#99999999999999999999999", "%", "_", "' OR 1=1"])
def test_odd_input_finds_nothing_and_never_fails(client, user_with_role, world, term):
    response = _signed_in(client, user_with_role, Role.OPERATIONS_ADMIN).get(SEARCH, {"q": term})
    assert response.status_code in (200, 400)  # a NUL is refused before the view, as on every page


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get(SEARCH, {"q": "SO1"})
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_every_page_has_the_search_box_and_a_search_costs_few_queries(client, user_with_role, world):
    supervisor = _signed_in(client, user_with_role, Role.WAREHOUSE_SUPERVISOR)
    assert 'class="topsearch"' in supervisor.get("/").content.decode()
    supervisor.get(SEARCH, {"q": "tape"})  # warm the session and role caches
    with CaptureQueriesContext(connection) as queries:
        supervisor.get(SEARCH, {"q": "tape"})
    assert len(queries) <= 10
    for number in range(30):
        stock_factories.ItemFactory(sku=f"TAPE-{100 + number}")
    with CaptureQueriesContext(connection) as more:
        hits = supervisor.get(SEARCH, {"q": "tape"}).context["hits"]
    assert len(more) == len(queries) and len(hits) == 10  # ten per source at most
