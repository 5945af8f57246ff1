"""The demo data make run loads: every role has work waiting, raised the way production raises it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from exceptions.models import Case
from orchestration.models import Order

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_the_demo_loads_once_with_cases_for_every_role_and_the_cutoff_case_comes_from_the_watch():
    out = io.StringIO()

    call_command("seed_demo", orders=20, stdout=out)

    queues = set(Case.objects.active().values_list("queue__code", flat=True))
    assert {"warehouse_supervisor", "customer_service", "finance", "transportation"} <= queues, queues
    late = Order.objects.get(external_ref="DEMO-EXC-CUTOFF")
    cutoff = Case.objects.active().get(type__code="carrier_cutoff_miss", order_number=late.number)
    assert cutoff.raised_by == "policy:cutoff-watch"
    assert "DPD" in cutoff.summary, cutoff.summary
    late.refresh_from_db()
    assert late.cutoff_warned_on is not None

    again = io.StringIO()
    call_command("seed_demo", if_empty=True, orders=20, stdout=again)
    assert "already loaded" in again.getvalue()
    assert Case.objects.filter(type__code="carrier_cutoff_miss", order_number=late.number).count() == 1


def test_a_demo_loaded_before_points_its_partners_at_this_runs_simulator_again(settings):
    from integrations.models import Partner

    call_command("seed_demo", orders=5, stdout=io.StringIO())
    # An older demo: the ERP could not post events, the WMS was disabled by an admin, the simulator moved
    Partner.objects.filter(code="erp").update(scopes=["orders:write", "orders:read"], outbound_base_url="http://old/")
    Partner.objects.filter(code="wms").update(is_enabled=False)
    settings.SIMULATOR_PORT = 18999

    again = io.StringIO()
    call_command("seed_demo", if_empty=True, stdout=again)

    assert "already loaded" in again.getvalue() and "port 18999" in again.getvalue()
    erp, wms = Partner.objects.get(code="erp"), Partner.objects.get(code="wms")
    assert set(erp.scopes) == {"orders:write", "orders:read", "availability:read", "events:write"}
    assert (erp.outbound_base_url, wms.outbound_base_url) == (
        "http://127.0.0.1:18999/erp",
        "http://127.0.0.1:18999/wms",
    )
    assert wms.is_enabled is False  # the admin's decision stands
    assert erp.history.latest("history_id").history_reason == "Demo partner pointed at this run's simulator"


def test_the_api_documentation_s_order_example_is_accepted_by_the_demo(client):
    from integrations.auth import partner_token_issue
    from integrations.models import Partner
    from portal.actors import Actor

    call_command("seed_demo", orders=5, stdout=io.StringIO())
    token = partner_token_issue(partner=Partner.objects.get(code="erp"), actor=Actor.system("test"), reason="Test")
    schema = client.get("/api/schema/", {"format": "json"}).json()
    examples = schema["paths"]["/api/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    (example,) = examples.values()

    response = client.post(
        "/api/v1/orders", example["value"], content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert response.status_code == 201, response.content
    assert [line["sku"] for line in response.json()["lines"]] == ["SKU-0001", "SKU-0002", "SKU-0003"]
