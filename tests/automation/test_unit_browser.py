"""A supervisor follows a unit in a real browser: from the board to the unit's page, which shows a jam reported
by another process (the WCS's events through the services) without a reload, strip and stoppage included."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from django.utils import timezone

from portal.roles import Role
from tests.automation import factories
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)
from tests.exceptions.test_browser import BASE_DIR, browser_page, portal_server, process_env  # noqa: F401  (fixtures)
from tests.factories import DEFAULT_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JAM_SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from django.utils import timezone
    from automation import services
    from portal.actors import Actor
    services.equipment_fault(equipment="sorter-b1", kind="jam", code="E42", message="Tote jam at induct 3",
                             now=timezone.now(), actor=Actor.partner("wcs"))
    """
)


def test_a_jam_shows_on_the_unit_page_live(seeded, user_with_role, portal_server, process_env, browser_page):  # noqa: F811
    page = browser_page
    user_with_role(Role.WAREHOUSE_SUPERVISOR, username="floor-lead")
    warehouse = factories.WarehouseFactory(code="BRU")
    factories.unit(warehouse, "sorter-b1", zone="PACK", kind="sorter", now=timezone.now())

    page.goto(f"{portal_server}/login/?next=/automation/equipment/")
    page.fill("#id_username", "floor-lead")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/automation/equipment/")
    page.click('a[href="/automation/equipment/sorter-b1/"]')
    page.wait_for_url("**/automation/equipment/sorter-b1/")
    page.wait_for_selector("#live-status[data-state=open]", timeout=10_000)
    assert "Online" in page.locator(".unit-now").inner_text()
    assert page.locator(".status-strip .span.status-faulted").count() == 0
    page.evaluate("window.__notReloaded = true")

    jammed = subprocess.run(
        [sys.executable, "-c", JAM_SCRIPT], cwd=BASE_DIR, env=process_env, capture_output=True, text=True
    )
    assert jammed.returncode == 0, jammed.stderr

    page.wait_for_function("document.querySelector('.unit-now').textContent.includes('Faulted')", timeout=5_000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator(".status-strip .span.status-faulted").count() == 1
    assert "Tote jam at induct 3" in page.locator("tr[data-fault]").inner_text()
