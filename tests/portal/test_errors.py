"""Unknown addresses: the API answers in its one error format, the portal with a page that says what to do."""

from __future__ import annotations

import pytest

from portal.roles import Role

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/orders/x/y/z", "/api/v2/orders"])
def test_unknown_api_path_is_a_json_404_in_the_one_format(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == "not_found"
    assert path in body["error"]["message"] and body["error"]["fields"] == {}


def test_unknown_portal_page_is_a_page_pointing_home(client, user_with_role):
    client.force_login(user_with_role())
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Go to your home page" in response.content.decode()


def test_a_refused_page_says_why_and_what_to_do(client, user_with_role):
    client.force_login(user_with_role(Role.PROCUREMENT))
    response = client.get("/orders/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "Orders belong to customer service, supervisors, finance and transportation." in page
    assert "ask an operations admin" in page and "Go to your home page" in page


def test_a_malformed_request_gets_a_page_that_does_not_blame_a_character(client, user_with_role):
    client.force_login(user_with_role(Role.FINANCE))
    response = client.get("/orders/", HTTP_HOST="portal.invalid")
    assert response.status_code == 400
    page = response.content.decode()
    assert "could not read that request" in page and "NUL" not in page


def test_a_malformed_api_request_is_answered_in_the_one_format(client):
    response = client.get("/api/v1/availability", HTTP_HOST="portal.invalid")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_a_stale_form_says_to_reload_and_changes_nothing(user_with_role):
    from django.test import Client

    from integrations.models import Partner

    partner = Partner.objects.create(code="erp", name="ERP", kind=Partner.Kind.ERP, outbound_base_url="http://x/")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user_with_role(Role.IT_SUPPORT))
    response = browser.post(f"/integrations/partners/{partner.pk}/pause/", {"minutes": "60", "reason": "Upgrade"})
    assert response.status_code == 403
    assert "That form had expired" in response.content.decode()
    partner.refresh_from_db()
    assert partner.deliveries_paused_until is None
