"""Fixtures shared by every app's tests. Keep this small: app fixtures live beside their tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from portal.roles import Role
from tests.factories import UserFactory


@pytest.fixture
def user_with_role(db):
    """Factory: ``user_with_role(Role.FINANCE, username="fran")`` → a user in that role's group.

    Pass no role for a user without one, or several roles for a user holding each.
    Groups are fetched with get_or_create because transactional tests flush the rows
    the roles migration created.
    """

    def make(*roles: Role, **fields):
        user = UserFactory(**fields)
        for role in roles:
            group, _ = Group.objects.get_or_create(name=role.label)
            user.groups.add(group)
        return user

    return make


def pytest_configure(config):
    # WhiteNoise warns on every request when `collectstatic` has not run; tests serve no static files.
    config.addinivalue_line("filterwarnings", "ignore:No directory at:UserWarning")
