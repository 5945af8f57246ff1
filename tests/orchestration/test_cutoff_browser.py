"""The carrier cutoff board in a real browser: it follows the floor without a reload."""

from __future__ import annotations

import datetime as dt

import pytest

from orchestration.models import Order
from orchestration.services import local_now
from portal.roles import Role
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)
from tests.exceptions.test_browser import browser_page, portal_server, process_env  # noqa: F401  (fixtures)
from tests.factories import DEFAULT_PASSWORD
from tests.orchestration import factories

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROW = '.cutoff-row[data-cutoff="BRC/DPD/standard"]'


def test_the_board_catches_up_when_the_tab_comes_back(seeded, user_with_role, portal_server, browser_page):  # noqa: F811
    page = browser_page
    user_with_role(Role.TRANSPORTATION, username="dock-lead")
    warehouse = factories.WarehouseFactory(code="BRC", time_zone="UTC", default_cutoff_time=dt.time(23, 59))
    item = factories.ItemFactory(sku="BRC-BOX")
    factories.stock(item, factories.LocationFactory(warehouse=warehouse, code="A-01"), 10)
    order = factories.order_for(
        factories.CustomerFactory(code="brc"),
        warehouse,
        [("BRC-BOX", 1)],
        requested_ship_date=local_now(warehouse).date(),
        carrier="DPD",
    )
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PICKING)

    page.goto(f"{portal_server}/login/?next=/")
    page.fill("#id_username", "dock-lead")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(ROW)
    assert "0 of 1 ready" in " ".join(page.locator(ROW).inner_text().split())
    page.evaluate("window.__notReloaded = true")

    Order.objects.filter(pk=order.pk).update(status=Order.Status.PACKED)  # packed on the floor meanwhile
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the supervisor looks back at the tab

    page.wait_for_function(
        f"document.querySelector('{ROW}') && document.querySelector('{ROW}').innerText.includes('1 of 1 ready')",
        timeout=5_000,
    )
    assert page.evaluate("window.__notReloaded") is True
    assert "0 in picking" in " ".join(page.locator(ROW).inner_text().split())
