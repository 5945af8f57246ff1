"""Signing in and out, the role home page, login throttling, client addresses and navigation."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import AnonymousUser, Group
from django.test import RequestFactory
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from portal.home import ROLE_FOCUS
from portal.management.commands.seed_demo import DEMO_USERS
from portal.navigation import NavItem, items_for
from portal.roles import Role, forget_roles, has_role, roles_of
from portal.security import UNKNOWN_ADDRESS, client_ip
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

LOCKED_OUT_TEXT = "Too many failed sign-ins"


def sign_in(client, username: str, password: str = DEFAULT_PASSWORD, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def test_login_page_renders(client):
    response = client.get("/login/")

    assert response.status_code == 200
    assertContains(response, '<form method="post" action="/login/">', html=False)
    assertContains(response, 'name="username"')
    assertContains(response, 'name="password"')
    assertContains(response, "csrfmiddlewaretoken")


def test_pages_and_the_admin_get_the_portal_icon(client):
    assertContains(client.get("/login/"), '<link rel="icon" href="/static/portal/favicon.svg" type="image/svg+xml">')

    response = client.get("/favicon.ico")  # what browsers ask for on pages that name no icon (the admin's)

    assert (response.status_code, response["Location"]) == (301, "/static/portal/favicon.svg")


def test_anonymous_home_redirects_to_login(client):
    response = client.get("/")

    assertRedirects(response, "/login/?next=/", fetch_redirect_response=False)


@pytest.mark.parametrize(("username", "first_name", "last_name", "role"), DEMO_USERS, ids=[u[0] for u in DEMO_USERS])
def test_each_role_signs_in_and_sees_its_focus(client, user_with_role, username, first_name, last_name, role):
    user_with_role(role, username=username, first_name=first_name, last_name=last_name)

    response = sign_in(client, username)

    assertRedirects(response, "/", fetch_redirect_response=False)
    home = client.get("/")
    assert home.status_code == 200
    assertContains(home, f"Good to see you, {first_name}")
    assertContains(home, f'<div class="role-card" data-role="{role.value}"><h2>{role.label}</h2>', count=1)
    assertContains(home, f"<p>{ROLE_FOCUS[role]}</p>", count=1)
    for other in Role:
        if other != role:
            assertNotContains(home, f'data-role="{other.value}"')
            assertNotContains(home, ROLE_FOCUS[other])
    assertNotContains(home, "No role yet")


def test_a_user_with_two_roles_sees_both(client, user_with_role):
    user = user_with_role(Role.FINANCE, Role.PROCUREMENT)
    client.force_login(user)

    home = client.get("/")

    assertContains(home, 'data-role="finance"', count=1)
    assertContains(home, 'data-role="procurement"', count=1)
    assertContains(home, 'class="role-card"', count=2)


def test_a_user_without_a_role_is_told_so(client, user_with_role):
    client.force_login(user_with_role())

    home = client.get("/")

    assert home.status_code == 200
    assertContains(home, "<h2>No role yet</h2>", count=1)
    assertNotContains(home, "data-role=")


def test_wrong_password_shows_the_form_again(client, user_with_role):
    user_with_role(Role.FINANCE, username="fran")

    response = sign_in(client, "fran", "not-the-password")

    assert response.status_code == 200
    assertContains(response, "Your username and password didn't match")
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_and_ends_the_session(client, user_with_role):
    client.force_login(user_with_role(Role.FINANCE))

    assert client.get("/logout/").status_code == 405
    assert client.get("/").status_code == 200

    response = client.post("/logout/")

    assertRedirects(response, "/login/", fetch_redirect_response=False)
    assertRedirects(client.get("/"), "/login/?next=/", fetch_redirect_response=False)


class TestLoginLockout:
    def test_repeated_failures_lock_that_username_from_that_address(self, client, user_with_role, settings):
        user_with_role(Role.FINANCE, username="fran")
        user_with_role(Role.FINANCE, username="frank")
        limit = settings.AXES_FAILURE_LIMIT

        for _ in range(limit - 1):
            assert sign_in(client, "fran", "wrong-password").status_code == 200
        locking = sign_in(client, "fran", "wrong-password")

        assert locking.status_code == 429
        assertContains(locking, LOCKED_OUT_TEXT, status_code=429)
        attempt = AccessAttempt.objects.get()
        assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == ("fran", "127.0.0.1", limit)
        # The right password no longer helps for this username from this address ...
        correct = sign_in(client, "fran")
        assertContains(correct, LOCKED_OUT_TEXT, status_code=429)
        assert "_auth_user_id" not in client.session
        # ... but another username from the same address still signs in.
        other = sign_in(client, "frank")
        assertRedirects(other, "/", fetch_redirect_response=False)

    def test_failures_below_the_limit_do_not_lock(self, client, user_with_role, settings):
        user_with_role(Role.FINANCE, username="fran")

        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            sign_in(client, "fran", "wrong-password")
        response = sign_in(client, "fran")

        assertRedirects(response, "/", fetch_redirect_response=False)
        assert not AccessAttempt.objects.exists()  # AXES_RESET_ON_SUCCESS

    def test_behind_a_proxy_the_lock_follows_the_client_not_spoofed_entries(self, client, user_with_role, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        user_with_role(Role.FINANCE, username="fran")

        for attempt in range(settings.AXES_FAILURE_LIMIT):
            # the attacker rotates a forged left-hand entry; the proxy appends the real address
            response = sign_in(client, "fran", "wrong-password", HTTP_X_FORWARDED_FOR=f"10.9.9.{attempt}, 198.51.100.7")
        assert response.status_code == 429
        assert AccessAttempt.objects.get().ip_address == "198.51.100.7"

        same_client = sign_in(client, "fran", HTTP_X_FORWARDED_FOR="10.0.0.1, 198.51.100.7")
        assert same_client.status_code == 429
        other_client = sign_in(client, "fran", HTTP_X_FORWARDED_FOR="198.51.100.8")
        assertRedirects(other_client, "/", fetch_redirect_response=False)


class TestClientIp:
    @pytest.fixture
    def request_from(self):
        factory = RequestFactory()

        def make(remote: str = "192.0.2.10", forwarded: str | None = None):
            extra = {"REMOTE_ADDR": remote}
            if forwarded is not None:
                extra["HTTP_X_FORWARDED_FOR"] = forwarded
            return factory.get("/", **extra)

        return make

    def test_no_trusted_proxy_uses_the_socket_address(self, request_from, settings):
        settings.TRUSTED_PROXY_COUNT = 0

        assert client_ip(request_from("192.0.2.10", "203.0.113.5")) == "192.0.2.10"

    def test_one_trusted_proxy_uses_the_last_forwarded_entry(self, request_from, settings):
        settings.TRUSTED_PROXY_COUNT = 1

        assert client_ip(request_from("10.0.0.2", "203.0.113.5")) == "203.0.113.5"

    def test_spoofed_entries_left_of_the_trusted_ones_are_ignored(self, request_from, settings):
        settings.TRUSTED_PROXY_COUNT = 1

        assert client_ip(request_from("10.0.0.2", "1.1.1.1, 6.6.6.6,203.0.113.5")) == "203.0.113.5"

    def test_two_trusted_proxies_use_the_second_entry_from_the_right(self, request_from, settings):
        settings.TRUSTED_PROXY_COUNT = 2

        assert client_ip(request_from("10.0.0.3", "6.6.6.6, 203.0.113.5, 10.0.0.2")) == "203.0.113.5"

    @pytest.mark.parametrize("forwarded", [None, "", " , "])
    def test_missing_forwarded_header_falls_back_to_the_socket_address(self, request_from, settings, forwarded):
        settings.TRUSTED_PROXY_COUNT = 1

        assert client_ip(request_from("10.0.0.2", forwarded)) == "10.0.0.2"

    def test_fewer_entries_than_trusted_proxies_falls_back_to_the_socket_address(self, request_from, settings):
        settings.TRUSTED_PROXY_COUNT = 2

        assert client_ip(request_from("10.0.0.2", "203.0.113.5")) == "10.0.0.2"

    @pytest.mark.parametrize("remote", ["", "unix:/run/portal.sock", "not an address"])
    def test_a_missing_or_malformed_socket_address_is_the_unknown_address(self, request_from, settings, remote):
        settings.TRUSTED_PROXY_COUNT = 0

        assert client_ip(request_from(remote)) == UNKNOWN_ADDRESS == "0.0.0.0"

    @pytest.mark.parametrize("forwarded", ["<script>", "203.0.113.5:443", "6.6.6.6, evil"])
    def test_a_malformed_trusted_entry_falls_back_to_the_socket_address(self, request_from, settings, forwarded):
        settings.TRUSTED_PROXY_COUNT = 1

        assert client_ip(request_from("10.0.0.2", forwarded)) == "10.0.0.2"

    def test_ipv6_addresses_are_kept(self, request_from, settings):
        settings.TRUSTED_PROXY_COUNT = 1

        assert client_ip(request_from("::1", "2001:db8::7")) == "2001:db8::7"

    @pytest.mark.parametrize(("remote", "forwarded"), [("", None), ("10.0.0.2", "garbage")])
    def test_sign_in_without_a_usable_address_still_works(self, client, user_with_role, settings, remote, forwarded):
        settings.TRUSTED_PROXY_COUNT = 1
        user_with_role(Role.FINANCE, username="fran")
        extra = {"REMOTE_ADDR": remote} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})

        failed = sign_in(client, "fran", "wrong-password", **extra)
        signed_in = sign_in(client, "fran", **extra)

        assert failed.status_code == 200
        assertRedirects(signed_in, "/", fetch_redirect_response=False)


class TestNavigation:
    def labels(self, user) -> list[str]:
        return [item["label"] for item in items_for(user)]

    def test_home_for_everyone_and_admin_only_for_staff(self, user_with_role):
        clerk = user_with_role(Role.FINANCE)
        admin = user_with_role(Role.OPERATIONS_ADMIN, is_staff=True)

        assert self.labels(clerk)[0] == "Home"
        assert "Admin" not in self.labels(clerk)
        assert self.labels(admin)[0] == "Home"
        assert self.labels(admin)[-1] == "Admin"
        assert items_for(admin)[-1] == {"label": "Admin", "url": "/admin/", "name": "admin:index"}

    def test_items_of_other_roles_are_hidden(self, user_with_role):
        finance = user_with_role(Role.FINANCE)

        assert not {"Equipment", "Integrations", "Stock"} & set(self.labels(finance))

    def test_role_filter_and_missing_pages(self, user_with_role, monkeypatch):
        monkeypatch.setattr(
            "portal.navigation.NAV_ITEMS",
            [
                NavItem("Home", "home"),
                NavItem("Health", "healthz", frozenset({Role.IT_SUPPORT})),
                NavItem("Not built yet", "nowhere:page", frozenset({Role.IT_SUPPORT})),
                NavItem("Admin", "admin:index", staff_only=True),
            ],
        )

        assert self.labels(user_with_role(Role.IT_SUPPORT)) == ["Home", "Health"]
        assert self.labels(user_with_role(Role.FINANCE)) == ["Home"]
        assert self.labels(user_with_role()) == ["Home"]
        assert self.labels(user_with_role(is_superuser=True, is_staff=True)) == ["Home", "Health", "Admin"]

    def test_page_shows_only_the_users_nav_items(self, client, user_with_role):
        client.force_login(user_with_role(Role.FINANCE))

        home = client.get("/")

        assertContains(home, '<a href="/" aria-current="page">Home</a>', html=True)
        assertNotContains(home, 'href="/admin/"')
        assertContains(home, '<span class="role-chip">Finance</span>', html=True)


class TestRoles:
    def test_roles_come_from_the_users_groups(self, user_with_role):
        user = user_with_role(Role.FINANCE, Role.IT_SUPPORT)

        assert roles_of(user) == {Role.FINANCE, Role.IT_SUPPORT}
        assert has_role(user, Role.IT_SUPPORT, Role.PROCUREMENT) is True
        assert has_role(user, Role.PROCUREMENT) is False

    def test_groups_that_are_not_roles_are_ignored(self, user_with_role):
        user = user_with_role(Role.FINANCE)
        user.groups.add(Group.objects.create(name="Bowling team"))

        assert roles_of(user) == {Role.FINANCE}

    def test_anonymous_and_inactive_users_hold_no_role(self, user_with_role):
        inactive = user_with_role(Role.FINANCE, is_active=False)

        assert roles_of(AnonymousUser()) == frozenset()
        assert roles_of(None) == frozenset()
        assert roles_of(inactive) == frozenset()

    def test_roles_are_cached_until_forgotten(self, user_with_role, django_assert_num_queries):
        user = user_with_role(Role.FINANCE)
        roles_of(user)
        user.groups.add(Group.objects.get_or_create(name=Role.PROCUREMENT.label)[0])

        with django_assert_num_queries(0):
            assert roles_of(user) == {Role.FINANCE}
        forget_roles(user)
        assert roles_of(user) == {Role.FINANCE, Role.PROCUREMENT}
