"""A NUL character pasted into any page's filter, address or form gets a 400 that says what to do, never a 500,
and changes nothing; the partner API keeps its own error format for it."""

from __future__ import annotations

import pytest
from django.test import Client

from integrations.models import Partner
from portal.roles import Role

PAGES = [
    "/",
    "/orders/?q=SO1\x00",
    "/orders/?status=\x00&carrier=DHL",
    "/orders/shipments/?q=\x00",
    "/tasks/?zone=A\x00",
    "/inventory/stock/?q=\x00",
    "/inventory/receipts/?q=\x00",
    "/queues/?q=\x00",
    "/automation/equipment/?warehouse=\x00",
    "/integrations/?order=\x00",
    "/integrations/requests/?q=\x00",
    "/integrations/events/?q=\x00",
    "/admin/orchestration/order/?q=\x00",
    "/orders/SO1\x00/",
]


@pytest.fixture
def superuser_client(client, user_with_role):
    client.force_login(user_with_role(username="root", is_superuser=True, is_staff=True))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_a_nul_anywhere_in_a_page_address_is_a_400(superuser_client, url):
    if url == "/":
        url = "/?\x00=1"  # in a parameter's name
    response = superuser_client.get(url)
    assert response.status_code == 400
    assert "could not read that request" in response.content.decode()


@pytest.mark.django_db
def test_a_nul_in_a_form_is_refused_and_nothing_changes(client, user_with_role):
    partner = Partner.objects.create(code="erp", name="ERP", kind=Partner.Kind.ERP, outbound_base_url="http://x/")
    client.force_login(user_with_role(Role.IT_SUPPORT))
    response = client.post(f"/integrations/partners/{partner.pk}/pause/", {"minutes": "60", "reason": "Upgrade\x00"})
    assert response.status_code == 400
    partner.refresh_from_db()
    assert partner.deliveries_paused_until is None
    # the same form without the NUL goes through
    client.post(f"/integrations/partners/{partner.pk}/pause/", {"minutes": "60", "reason": "Upgrade"})
    partner.refresh_from_db()
    assert partner.deliveries_paused_until is not None


@pytest.mark.django_db
def test_signed_out_visitors_get_the_same_answer():
    response = Client().get("/login/?next=/\x00")
    assert response.status_code == 400


@pytest.mark.django_db
def test_the_api_answers_a_nul_in_its_own_error_format():
    response = Client().get("/api/v1/availability", {"sku": "A\x00"})
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


@pytest.mark.django_db
def test_a_clean_request_passes(client):
    assert client.get("/login/?next=/orders/").status_code == 200
