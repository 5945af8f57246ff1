"""Operations admin configures partners and their tokens: scopes, outbound URL and secret, a token issued with a
reason and shown once, tokens revoked; every change recorded with who and why."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from integrations.auth import partner_for_token, partner_token_issue
from integrations.models import Partner, PartnerToken
from portal.actors import Actor
from portal.roles import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def opsadmin(client, user_with_role):
    """The operations admin role alone (no superuser flag): its group carries the permissions."""
    client.force_login(user_with_role(Role.OPERATIONS_ADMIN, username="olu", is_staff=True))
    return client


@pytest.fixture
def wms(db):
    return Partner.objects.create(
        code="wms-main",
        name="Main WMS",
        kind=Partner.Kind.WMS,
        scopes=["events:write"],
        webhook_secret="a-long-enough-secret",
        outbound_base_url="http://wms.example/",
    )


def form_data(**overrides) -> dict:
    data = {
        "code": "shop",
        "name": "Web shop",
        "kind": Partner.Kind.STOREFRONT,
        "is_enabled": "on",
        "scopes": ["orders:write", "orders:read"],
        "rate_limit_per_minute": "600",
        "outbound_base_url": "",
        "webhook_secret": "",
        "timeout_seconds": "5",
        "max_attempts": "8",
        "tokens-TOTAL_FORMS": "0",
        "tokens-INITIAL_FORMS": "0",
        "tokens-MIN_NUM_FORMS": "0",
        "tokens-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_adding_a_partner_with_scopes_gets_it_a_random_secret_and_a_recorded_history(opsadmin):
    response = opsadmin.post(reverse("admin:integrations_partner_add"), form_data())
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    shop = Partner.objects.get(code="shop")
    assert shop.scopes == ["orders:write", "orders:read"]
    assert len(shop.webhook_secret) >= 32
    assert shop.history.latest().history_actor == "user:olu"


def test_an_erp_without_an_outbound_url_or_a_short_secret_is_refused(opsadmin):
    response = opsadmin.post(
        reverse("admin:integrations_partner_add"),
        form_data(code="erp2", kind=Partner.Kind.ERP, webhook_secret="short"),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"outbound_base_url", "webhook_secret"}
    assert not Partner.objects.filter(code="erp2").exists()


def test_editing_without_a_secret_keeps_the_current_one(opsadmin, wms):
    url = reverse("admin:integrations_partner_change", args=[wms.pk])
    page = opsadmin.get(url).content.decode()
    assert "a-long-enough-secret" not in page  # never shown back
    data = form_data(code="wms-main", name="Main WMS", kind="wms", scopes=["events:write", "orders:read"])
    data["outbound_base_url"] = "http://wms.example/v2/"
    assert opsadmin.post(url, data).status_code == 302
    wms.refresh_from_db()
    assert wms.webhook_secret == "a-long-enough-secret"
    assert wms.outbound_base_url == "http://wms.example/v2/" and wms.scopes == ["events:write", "orders:read"]


def test_a_token_is_issued_with_a_reason_shown_once_and_the_old_one_stops_working(opsadmin, wms):
    old = partner_token_issue(partner=wms, actor=Actor.system("test"), reason="First")
    url = reverse("admin:integrations_partner_issue_token", args=[wms.pk])
    assert (
        "Issue a new API token"
        in opsadmin.get(reverse("admin:integrations_partner_change", args=[wms.pk])).content.decode()
    )

    assert "reason" in opsadmin.post(url, {"reason": ""}).context["form"].errors  # no reason: nothing issued
    assert PartnerToken.objects.filter(partner=wms, revoked_at__isnull=True).count() == 1

    response = opsadmin.post(url, {"reason": "Rotation after the WMS upgrade"})
    assert "no-store" in response["Cache-Control"]
    token = re.search(r'id="issued-token">([^<]+)<', response.content.decode()).group(1)
    assert partner_for_token(token)[0] == wms
    assert partner_for_token(old) is None
    assert wms.history.latest().history_reason == "Rotation after the WMS upgrade"
    # the change page lists tokens by prefix only
    page = opsadmin.get(reverse("admin:integrations_partner_change", args=[wms.pk])).content.decode()
    assert token[:12] in page and token not in page


def test_revoking_every_token_cuts_the_partner_off(opsadmin, wms):
    token = partner_token_issue(partner=wms, actor=Actor.system("test"), reason="First")
    url = reverse("admin:integrations_partner_service_action", args=[wms.pk, "revoke_tokens"])
    opsadmin.post(url, {"reason": "Token leaked in a ticket"})
    assert partner_for_token(token) is None
    assert wms.history.latest().history_reason == "Token leaked in a ticket"
    api = Client().get("/api/v1/availability", {"sku": "X"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.status_code == 401


@pytest.mark.parametrize("role", [Role.IT_SUPPORT, Role.WAREHOUSE_SUPERVISOR])
def test_staff_of_other_roles_cannot_issue_tokens(client, user_with_role, wms, role):
    client.force_login(user_with_role(role, is_staff=True))
    response = client.post(reverse("admin:integrations_partner_issue_token", args=[wms.pk]), {"reason": "x"})
    assert response.status_code in (302, 403)
    assert not PartnerToken.objects.filter(partner=wms).exists()
