"""A supervisor's queue in a real browser: a short pick raised in another process appears without a
reload, and is resolved from the case page. Chromium (Debian's) driven by Playwright; the portal runs in
uvicorn (ASGI, so the live socket works) against this test's committed database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from exceptions.models import Case
from portal.roles import Role
from portal.run import WEBSOCKET_IMPLEMENTATION
from tests.exceptions import factories
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)
from tests.factories import DEFAULT_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]
OUTPUT = BASE_DIR / "tests" / "output"
CHROMIUM = "/usr/bin/chromium"
OPEN_COUNT = '.queue-card[data-queue="warehouse_supervisor"] [data-field="open"]'


def _chromium() -> str:
    for candidate in (CHROMIUM, shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.skip("Debian's chromium is not installed (make browser installs it: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _test_database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def process_env():
    """Environment for processes that must see this test's database and Redis (committed data only)."""
    return {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_CONN_MAX_AGE": "0",  # no connection outlives a request: the test database can be dropped after
    }


@pytest.fixture
def portal_server(process_env, tmp_path):
    """uvicorn serving the portal (HTTP and WebSocket) on a free port; stopped after the test."""
    port = _free_port()
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "portal.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            WEBSOCKET_IMPLEMENTATION,
        ],  # fmt: skip
        cwd=BASE_DIR,
        env=process_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    if server.poll() is not None:
        log.close()
        pytest.fail("uvicorn did not start:\n" + (tmp_path / "uvicorn.log").read_text())
    yield url
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()
    _wait_for_other_sessions_to_end()


def _wait_for_other_sessions_to_end(timeout: float = 10) -> None:
    """The server's database sessions end a moment after its process; the test database is dropped after us."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


@pytest.fixture
def browser_page(monkeypatch):
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        yield page
        # With Playwright's loop running, the test's ORM calls used a connection of their own: close it here.
        connections.close_all()
        browser.close()


SHORT_PICK_SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from inventory.models import Warehouse
    from orchestration.models import Customer
    from tests.exceptions import factories
    task = factories.short_pick(Customer.objects.get(code="acme-browser"), Warehouse.objects.get(code="BRW"),
                                "BRW-WIDGET", 5, 2)
    print(task.pk)
    """
)


def test_a_short_pick_appears_live_and_is_resolved_from_the_case_page(
    request, seeded, user_with_role, portal_server, process_env, browser_page
):
    page = browser_page
    user_with_role(Role.WAREHOUSE_SUPERVISOR, username="shift-supervisor")
    warehouse = factories.WarehouseFactory(code="BRW")
    factories.CustomerFactory(code="acme-browser")
    factories.stocked_item(warehouse, sku="BRW-WIDGET", quantity=5)

    # Sign in and open the queue.
    page.goto(f"{portal_server}/login/?next=/queues/warehouse_supervisor/")
    page.fill("#id_username", "shift-supervisor")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/queues/warehouse_supervisor/")
    page.wait_for_selector("#live-status[data-state=open]", timeout=10_000)
    assert page.locator("tr[data-case]").count() == 0
    page.evaluate("window.__notReloaded = true")
    home = page.context.new_page()  # the role home in a second tab: its counts follow too
    home.goto(f"{portal_server}/")
    home.wait_for_selector("#live-status[data-state=open]", timeout=10_000)
    assert home.locator(OPEN_COUNT).inner_text() == "0"
    assert "Nothing waiting" in home.locator(".due-next").inner_text()

    # Another process picks short through the domain services; the case is raised in its transaction.
    raised = subprocess.run(
        [sys.executable, "-c", SHORT_PICK_SCRIPT], cwd=BASE_DIR, env=process_env, capture_output=True, text=True
    )
    assert raised.returncode == 0, raised.stderr
    task_id = raised.stdout.strip().splitlines()[-1]
    case = Case.objects.get(type__code="short_pick", context__task_id=int(task_id))

    # The row appears without a reload.
    row = page.wait_for_selector(f'tr[data-case="{case.pk}"]', timeout=5_000)
    assert page.evaluate("window.__notReloaded") is True
    assert "Short pick" in row.inner_text()
    assert page.locator("#queue-total").inner_text() == "1"
    home.wait_for_function(f"document.querySelector('{OPEN_COUNT}').textContent === '1'", timeout=5_000)
    home.wait_for_selector(f'.due-next tr[data-case="{case.pk}"]', timeout=5_000)  # and it is due next

    # Resolve it from the case page: backorder the missing units, with a reason.
    row.query_selector(f'a[href="/queues/cases/{case.pk}/"]').click()
    page.wait_for_url(f"**/queues/cases/{case.pk}/")
    page.check('input[name=resolution][value="backorder"]')
    page.fill("#resolve-reason", "No other stock in BRW; backorder the rest")
    page.click("#resolve-form button[type=submit]")
    page.wait_for_selector(".msg-success", timeout=10_000)

    assert "resolved" in page.locator(".msg-success").inner_text().lower()
    case.refresh_from_db()
    assert case.status == Case.Status.RESOLVED and case.resolution_code == "backorder"
    home.wait_for_function(f"document.querySelector('{OPEN_COUNT}').textContent === '0'", timeout=5_000)
    home.wait_for_selector(f'.due-next tr[data-case="{case.pk}"]', state="detached", timeout=5_000)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{request.node.name}.png"), full_page=True)

    # Back on the queue the case is gone.
    page.goto(f"{portal_server}/queues/warehouse_supervisor/")
    assert page.locator(f'tr[data-case="{case.pk}"]').count() == 0


RAISE_TWO_SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from exceptions.services import case_raise
    from portal.actors import Actor
    for number in (1, 2):
        case = case_raise(type_code="damaged_stock", subject_type="inventory.stocklevel", subject_id=f"gap-{number}",
                          summary=f"Crushed carton {number} at A-01", actor=Actor.system("wms"), reason="Found damaged")
        print(case.pk)
    """
)


def test_a_lost_hint_is_caught_up_by_sequence(
    request, seeded, user_with_role, portal_server, process_env, browser_page
):
    page = browser_page
    user_with_role(Role.WAREHOUSE_SUPERVISOR, username="night-supervisor")
    lost = []

    def drop_the_first_queue_hint(socket_route):
        server = socket_route.connect_to_server()

        def from_server(message):
            if '"queue_change"' in str(message) and not lost:
                lost.append(message)  # the channel layer may drop a hint: the page must notice the gap
                return
            socket_route.send(message)

        server.on_message(from_server)

    page.route_web_socket("**/ws/live/", drop_the_first_queue_hint)
    page.goto(f"{portal_server}/login/?next=/queues/warehouse_supervisor/")
    page.fill("#id_username", "night-supervisor")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/queues/warehouse_supervisor/")
    page.wait_for_selector("#live-status[data-state=open]", timeout=10_000)
    page.evaluate("window.__notReloaded = true")

    raised = subprocess.run(
        [sys.executable, "-c", RAISE_TWO_SCRIPT], cwd=BASE_DIR, env=process_env, capture_output=True, text=True
    )
    assert raised.returncode == 0, raised.stderr
    first, second = (int(line) for line in raised.stdout.split()[-2:])

    page.wait_for_selector(f'tr[data-case="{second}"]', timeout=5_000)
    page.wait_for_selector(f'tr[data-case="{first}"]', timeout=5_000)
    assert len(lost) == 1
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("#queue-total").inner_text() == "2"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{request.node.name}.png"), full_page=True)
