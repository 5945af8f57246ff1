"""The top bar in a real browser: one line on a laptop screen, whatever the role's menu, and a tidy second row below."""

from __future__ import annotations

import pytest

from portal.roles import Role
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)
from tests.exceptions.test_browser import browser_page, portal_server, process_env  # noqa: F401  (fixtures)
from tests.factories import DEFAULT_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BOXES = """() => Object.fromEntries(
  [".brand", ".mainnav", ".topsearch", ".userbox", ".topbar"].map((selector) => {
    const box = document.querySelector(selector).getBoundingClientRect();
    return [selector, {top: box.top, bottom: box.bottom, height: box.height}];
  }))"""


def test_the_bar_keeps_one_line_and_gives_the_menu_a_row_below(seeded, user_with_role, portal_server, browser_page):  # noqa: F811
    page = browser_page
    user_with_role(Role.OPERATIONS_ADMIN, username="rules-owner", first_name="Olu", last_name="Admin")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{portal_server}/login/?next=/")
    page.fill("#id_username", "rules-owner")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".mainnav a[href='/integrations/']")

    wide = page.evaluate(BOXES)
    assert wide[".topbar"]["height"] < 60, wide  # one row: every menu item beside the brand, search and user
    assert wide[".mainnav"]["height"] < 40, wide
    assert page.get_attribute(".username", "title") == "Operations admin"  # the roles, when their chips give way

    page.set_viewport_size({"width": 1100, "height": 900})
    narrow = page.evaluate(BOXES)
    assert narrow[".mainnav"]["top"] >= narrow[".brand"]["bottom"], narrow  # the menu has a row of its own
    assert narrow[".mainnav"]["height"] < 40, narrow
    assert narrow[".userbox"]["top"] < narrow[".mainnav"]["top"], narrow
