"""The customer pages: who may see a customer's credit, what counts against the limit, and fixed queries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orchestration.models import Customer, Order
from portal.actors import Actor, stamp_history
from portal.roles import Role
from tests.orchestration import factories

pytestmark = pytest.mark.django_db

LIST = reverse("orchestration:customer-list")


def detail_url(code: str) -> str:
    return reverse("orchestration:customer-detail", args=[code])


@pytest.fixture
def tight(warehouse, tape):
    """A customer at its limit: one order allocated (50.00), two held for credit (30.00 and 20.00)."""
    customer = factories.CustomerFactory(code="tight", name="Tight Ltd", credit_limit=Decimal("60"))
    Customer.objects.filter(pk=customer.pk).update(open_balance=Decimal("10"))
    customer.refresh_from_db()
    first = factories.processed_order(customer, warehouse, [("TAPE", 5)])
    held = [factories.processed_order(customer, warehouse, [("TAPE", n)]) for n in (3, 2)]
    assert first.status != Order.Status.CREDIT_HOLD
    assert [order.status for order in held] == [Order.Status.CREDIT_HOLD] * 2
    return customer


@pytest.mark.parametrize(
    "role, status",
    [
        (Role.FINANCE, 200),
        (Role.CUSTOMER_SERVICE, 200),
        (Role.OPERATIONS_ADMIN, 200),
        (Role.WAREHOUSE_SUPERVISOR, 403),
        (Role.TRANSPORTATION, 403),
        (Role.PROCUREMENT, 403),
        (Role.IT_SUPPORT, 403),
        (None, 403),
    ],
)
def test_customers_credit_is_for_finance_and_customer_service(client, user_with_role, customer, role, status):
    client.force_login(user_with_role(*([role] if role else []), username=f"u-{role or 'none'}"))
    assert client.get(LIST).status_code == status
    assert client.get(detail_url(customer.code)).status_code == status
    assert client.get(detail_url("nobody")).status_code == (404 if status == 200 else 403)
    assert ('href="/orders/customers/"' in client.get("/").content.decode()) == (status == 200)


def test_the_list_puts_those_needing_a_look_first(client, user_with_role, tight, warehouse, tape):
    roomy = factories.CustomerFactory(code="roomy", credit_limit=Decimal("100000"))
    factories.processed_order(roomy, warehouse, [("TAPE", 1)])
    factories.CustomerFactory(code="blocked", credit_status=Customer.CreditStatus.BLOCKED)
    factories.CustomerFactory(code="nolimit", credit_limit=Decimal("0"))
    Customer.objects.filter(code="nolimit").update(open_balance=Decimal("5"))
    client.force_login(user_with_role(Role.FINANCE))

    page = client.get(LIST)

    rows = {customer.code: customer for customer in page.context["page"]}
    assert list(rows) == ["nolimit", "tight", "blocked"]  # no limit set counts as over it; roomy needs no look
    assert (rows["tight"].exposure, rows["tight"].held_count, rows["tight"].held_value) == (
        Decimal("60.00"),
        2,
        Decimal("50.00"),
    )
    assert rows["tight"].used_percent == 100
    html = page.content.decode()
    assert "no limit set" in html and 'aria-label="100% of the limit used"' in html
    assert f"{reverse('orchestration:order-list')}?customer=tight&amp;status=credit_hold" in html
    everyone = [c.code for c in client.get(LIST, {"focus": "all"}).context["page"]]
    assert everyone[:2] == ["nolimit", "tight"] and set(everyone) == {"nolimit", "tight", "roomy", "blocked"}
    assert [c.code for c in client.get(LIST, {"focus": "all", "q": "ROOM"}).context["page"]] == ["roomy"]
    assert [c.code for c in client.get(LIST, {"focus": "nonsense"}).context["page"]] == list(rows)


def test_a_customer_page_shows_what_counts_against_the_limit_and_what_is_held(client, user_with_role, tight):
    client.force_login(user_with_role(Role.FINANCE))

    response = client.get(detail_url("tight"))

    account = response.context["account"]
    assert [(row["status"], row["orders"], row["value"]) for row in account.in_flight] == [
        (Order.Status.RELEASED, 1, Decimal("50.00"))
    ]
    assert (account.exposure, account.headroom) == (Decimal("60.00"), Decimal("0.00"))
    assert (account.held_count, account.held_value, account.exposure_if_released) == (
        2,
        Decimal("50.00"),
        Decimal("110.00"),
    )
    assert [order.total_value for order in account.held] == [Decimal("30.00"), Decimal("20.00")]  # oldest first
    assert account.bar == {"balance": 9.09, "in_flight": 45.45, "held": 45.45, "limit": 54.55}
    html = response.content.decode()
    assert "Releasing every held order would take the exposure to 110" in html
    assert html.count('data-order="') == 2  # the held table's rows


def test_changes_to_the_credit_terms_say_what_changed_who_and_why(client, user_with_role, customer):
    customer.credit_limit = Decimal("5000")
    stamp_history(customer, actor=Actor.system("ops"), reason="Annual review")
    customer.save()
    customer.name = "Acme Holdings"  # not a credit term: not listed
    customer.save()
    customer.credit_status = Customer.CreditStatus.WATCH
    stamp_history(customer, actor=Actor.system("ops"), reason="Two invoices overdue")
    customer.save()
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE))

    changes = client.get(detail_url(customer.code)).context["account"].changes

    assert [(change["what"], change["reason"]) for change in changes] == [
        ("credit status good → watch", "Two invoices overdue"),
        ("credit limit 10000000.00 → 5000.00", "Annual review"),
        ("account opened: limit 10000000.00, credit good", ""),
    ]


def test_the_order_page_links_the_customer_for_those_who_may_see_credit(client, user_with_role, tight):
    order = tight.orders.first()
    url = reverse("orchestration:order-detail", args=[order.number])
    client.force_login(user_with_role(Role.FINANCE))
    assert f'href="{detail_url("tight")}"' in client.get(url).content.decode()
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    assert f'href="{detail_url("tight")}"' not in client.get(url).content.decode()


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return len(captured)


def test_the_pages_cost_the_same_queries_for_few_or_many_orders_and_customers(
    client, user_with_role, tight, warehouse, tape
):
    client.force_login(user_with_role(Role.FINANCE))
    _queries(client, LIST)  # warm the session and role caches
    few_list, few_detail = _queries(client, LIST, {"focus": "all"}), _queries(client, detail_url("tight"))
    for number in range(12):
        factories.CustomerFactory(code=f"more-{number}")
        factories.processed_order(tight, warehouse, [("TAPE", 1)])  # held: over the limit
    stamp_history(tight, actor=Actor.system("ops"), reason="Raised")
    tight.credit_limit = Decimal("61")
    tight.save()
    assert _queries(client, LIST, {"focus": "all"}) == few_list
    assert _queries(client, detail_url("tight")) == few_detail
