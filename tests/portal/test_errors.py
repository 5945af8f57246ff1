"""Unknown addresses: the API answers in its one error format, the portal with a page that says what to do."""

from __future__ import annotations

import pytest

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
