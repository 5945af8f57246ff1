"""The partner simulator as a real process: dedupe on Idempotency-Key, signatures, faults and outage windows,
the ERP stock report; and the ERP adapter's reading of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from integrations.adapters.base import encode, sign

pytestmark = [pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]
SECRET = "sim-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def simulator(django_db_setup):
    """The simulator, started once the test database exists (creating it first would eat the 5-second outage)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "integrations.simulator", "--no-drive", "--port", str(port), "--outage", "tms:0:5"],
        cwd=BASE_DIR,
        env={**os.environ, **{f"SIMULATOR_{kind}_SECRET": SECRET for kind in ("ERP", "WMS", "TMS", "WCS")}},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


def post(url: str, body: dict, *, key=None, secret=SECRET, message_id=1, ordering="k", message_type="order.accepted"):
    raw = encode(body)
    timestamp = str(int(time.time()))
    return httpx.post(
        url,
        content=raw,
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": key or str(uuid.uuid4()),
            "X-Timestamp": timestamp,
            "X-Signature": sign(secret, timestamp, raw),
            "X-Message-Id": str(message_id),
            "X-Ordering-Key": ordering,
            "X-Message-Type": message_type,
        },
    )


def stats(url: str, kind: str = "erp") -> dict:
    return httpx.get(f"{url}/_control/stats").json()[kind]


def test_an_outage_window_from_the_command_line(simulator):
    # started with --outage tms:0:5; the other tests' resets keep faults
    deadline = time.monotonic() + 15
    while post(f"{simulator}/tms/shipments", {}).status_code == 503:
        assert time.monotonic() < deadline, "the outage never ended"
        time.sleep(0.3)
    counts = stats(simulator, "tms")
    assert counts["failed"] >= 1 and counts["applied"] == 1


def test_a_repeated_idempotency_key_is_applied_once_and_counted(simulator):
    httpx.post(f"{simulator}/_control/reset", json={"faults": False})
    key = str(uuid.uuid4())
    first = post(f"{simulator}/erp/orders/acknowledgements", {"a": 1}, key=key)
    again = post(f"{simulator}/erp/orders/acknowledgements", {"a": 1}, key=key)

    assert first.status_code == 200 and first.json()["status"] == "applied"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    counts = stats(simulator)
    assert counts["applied"] == 1 and counts["duplicates"] == 1


def test_a_bad_signature_is_refused(simulator):
    httpx.post(f"{simulator}/_control/reset", json={"faults": False})
    response = post(f"{simulator}/erp/orders/acknowledgements", {"a": 1}, secret="not-the-secret")
    assert response.status_code == 401
    assert stats(simulator)["bad_signatures"] == 1 and stats(simulator)["applied"] == 0


def test_faults_set_through_the_control_endpoint(simulator):
    httpx.post(f"{simulator}/_control/reset", json={})
    httpx.post(f"{simulator}/_control/config", json={"erp": {"error_rate": 1, "error_status": 503, "retry_after": 7}})
    failed = post(f"{simulator}/erp/x", {})
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "7"

    httpx.post(f"{simulator}/_control/config", json={"erp": {"error_rate": 0, "refuse_status": 422}})
    assert post(f"{simulator}/erp/x", {}).status_code == 422

    httpx.post(f"{simulator}/_control/config", json={"erp": {"refuse_status": None, "outage_seconds": 30}})
    assert post(f"{simulator}/erp/x", {}).status_code == 503
    httpx.post(f"{simulator}/_control/config", json={"erp": {"outage_seconds": 0}})
    assert post(f"{simulator}/erp/x", {}).status_code == 200
    counts = stats(simulator)
    assert counts == {**counts, "failed": 2, "refused": 1, "applied": 1}


def test_messages_arriving_out_of_order_per_key_are_counted(simulator):
    httpx.post(f"{simulator}/_control/reset", json={})
    post(f"{simulator}/erp/x", {}, message_id=5, ordering="order:A")
    post(f"{simulator}/erp/x", {}, message_id=3, ordering="order:A")
    post(f"{simulator}/erp/x", {}, message_id=4, ordering="order:B")
    assert stats(simulator)["out_of_order"] == 1


@pytest.mark.django_db
def test_the_erp_adapter_reads_the_simulated_stock_book(simulator):
    from integrations.adapters import adapter_for
    from integrations.models import Partner

    # A database test runs before the others (pytest-django's order): keep the outage window they test.
    httpx.post(f"{simulator}/_control/reset", json={"faults": False})
    httpx.post(f"{simulator}/_control/stock", json={"DC1": {"SKU-1": 10, "SKU-2": 0}})
    partner = Partner(code="erp", kind="erp", outbound_base_url=f"{simulator}/erp", timeout_seconds=2)

    assert adapter_for("erp").stock_report(partner, warehouse="DC1") == {"SKU-1": 10, "SKU-2": 0}
    assert adapter_for("erp").stock_report(partner, warehouse="DC9") == {}

    # an applied adjustment moves the ERP's book
    adjustment = {"data": {"warehouse": "DC1", "sku": "SKU-1", "quantity_delta": -3}}
    post(f"{simulator}/erp/inventory/adjustments", adjustment, message_type="inventory.adjusted")
    assert adapter_for("erp").stock_report(partner, warehouse="DC1") == {"SKU-1": 7, "SKU-2": 0}


def test_the_simulated_erp_asks_for_tomorrow_after_its_same_day_order_cutoff():
    import datetime as dt

    from integrations.simulator.__main__ import parse_args
    from integrations.simulator.driver import requested_ship_date

    until = parse_args(["--same-day-until", "14:00"]).same_day_until
    morning = dt.datetime(2026, 3, 10, 13, 59, tzinfo=dt.UTC)
    evening = dt.datetime(2026, 3, 10, 19, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 18:00 UTC

    assert requested_ship_date(morning, until) == dt.date(2026, 3, 10)
    assert requested_ship_date(evening, until) == dt.date(2026, 3, 11)
    assert requested_ship_date(dt.datetime(2026, 3, 10, 23, 30, tzinfo=dt.UTC), until) == dt.date(2026, 3, 11)


def quiet_driver(**options):
    """A simulator driver that records what it would post and schedule instead of doing it: (driver, sent, scheduled).

    `scheduled` holds (seconds, action) pairs; run an action to move the simulated day on.
    """
    from integrations.simulator.driver import Driver

    defaults = {"portal": "http://127.0.0.1:9", "tokens": {}, "secrets": {}, "order_rate": 0, "short_rate": 0}
    driver = Driver(**{**defaults, "work_seconds": 1, "customers": {}, "skus": [], **options})
    sent, scheduled = [], []
    driver.send_event = lambda kind, event_type, payload, attempts=1: sent.append((kind, event_type, payload))
    driver.later = lambda seconds, action: scheduled.append((seconds, action))
    return driver, sent, scheduled


def test_the_simulated_erp_invoices_what_shipped_and_books_the_payment_later():
    from decimal import Decimal

    driver, sent, scheduled = quiet_driver(balances={"acme": Decimal("100.00")}, payment_seconds=600)
    confirmation = {
        "portal_order": "SO7",
        "customer": "acme",
        "lines": [{"quantity": 2, "unit_price": "12.50"}, {"quantity": 1, "unit_price": "5.00"}],
    }

    driver.on_message("erp", "shipment.confirmed", {"data": confirmation})
    scheduled.pop()[1]()  # the invoicing run comes after a pause

    assert sent == [
        ("erp", "order.invoiced", {"order": "SO7", "invoice": "INV-SO7"}),
        ("erp", "customer.credit", {"customer": "acme", "open_balance": "130.00"}),
    ]
    seconds, pay = scheduled.pop()
    assert seconds == 600
    pay()
    assert sent[-1] == ("erp", "customer.credit", {"customer": "acme", "open_balance": "100.00"})


def test_the_simulated_erp_announces_deliveries_and_the_wms_puts_them_away_at_the_pick_faces():
    faces = {("DC1", "SKU-1"): "A-01", ("DC1", "SKU-2"): "A-02", ("DC2", "SKU-1"): "B-01"}
    driver, sent, scheduled = quiet_driver(faces=faces, seed=7)

    driver.announce_delivery()

    ((kind, event_type, announced),) = sent
    assert (kind, event_type) == ("erp", "receipt.expected")
    faces_there = {sku for warehouse, sku in driver.faces if warehouse == announced["warehouse"]}
    assert {line["sku"] for line in announced["lines"]} <= faces_there and announced["lines"]

    told = {**announced, "lines": [{**line, "line_no": n} for n, line in enumerate(announced["lines"], 1)]}
    driver.on_message("wms", "receipt.expected", {"data": told})
    scheduled.pop()[1]()  # the truck is unloaded after a pause
    scheduled.pop()[1]()  # then the receipt is closed

    arrivals = [payload for _, event_type, payload in sent if event_type == "stock.received"]
    assert [(a["sku"], a["quantity"], a["receipt_line"]) for a in arrivals] == [
        (line["sku"], line["expected_quantity"], line["line_no"]) for line in told["lines"]
    ]
    assert all(a["location"] == driver.faces[(announced["warehouse"], a["sku"])] for a in arrivals)
    assert sent[-1] == ("wms", "receipt.closed", {"receipt": announced["receipt"]})


def test_the_simulated_carrier_delivers_what_it_collected():
    driver, sent, scheduled = quiet_driver()

    driver.collect({"order": "SO9", "shipment": "SH9", "carrier": "DPD"})
    scheduled.pop()[1]()

    assert [(kind, event_type) for kind, event_type, _ in sent] == [
        ("tms", "shipment.shipped"),
        ("tms", "shipment.delivered"),
    ]
    assert sent[-1][2] == {"order": "SO9", "shipment": "SH9"}


def test_the_simulated_wms_counts_what_is_on_the_shelf():
    shelves = {("DC1", "A-01", "SKU-1", ""): 12}
    driver, sent, scheduled = quiet_driver(shelf=lambda *where: shelves.get(where))

    driver.on_message(
        "wms", "count.requested", {"data": {"count_id": 5, "warehouse": "DC1", "location": "A-01", "sku": "SKU-1"}}
    )
    driver.on_message(
        "wms", "count.requested", {"data": {"count_id": 6, "warehouse": "DC1", "location": "Z-99", "sku": "SKU-1"}}
    )
    for _, action in scheduled:
        action()

    assert sent == [("wms", "count.recorded", {"count_id": 5, "counted_quantity": 12})]  # no shelf, no count


@pytest.mark.django_db
def test_the_simulated_erp_sends_most_orders_for_the_largest_accounts():
    from decimal import Decimal

    from integrations.simulator.driver import master_data
    from tests.orchestration.factories import CustomerFactory

    # Given: a key account with a credit limit 100 times a small one's
    CustomerFactory(code="key", credit_limit=Decimal("250000"))
    CustomerFactory(code="small", credit_limit=Decimal("2500"))
    customers, _ = master_data()
    assert customers["key"] == pytest.approx(10 * customers["small"])

    # When: the ERP sends a thousand orders
    driver, _, _ = quiet_driver(customers=customers, skus=["TAPE"], tokens={"erp": "token"}, seed=5)
    posted = []
    driver.client.post = lambda url, json, headers: posted.append(json["customer"]) or httpx.Response(201)
    for _ in range(1000):
        driver.send_order()

    # Then: about one in eleven is the small account's (the square root of the limits: 10 to 1)
    assert 50 <= posted.count("small") <= 140
    assert posted.count("key") + posted.count("small") == 1000


def test_while_the_driver_starts_messages_are_answered_503_and_taken_once_it_listens():
    from integrations.simulator.receiver import SimulatorState

    state = SimulatorState(secrets={}, seed=1)
    heard = []
    state.starting = True
    headers = {"Idempotency-Key": "instruction-1", "X-Message-Type": "wcs.work_instruction"}

    status, _, extra = state.receive("wcs", "/wcs/instructions", headers, b'{"data": {}}')

    assert (status, extra) == (503, {"Retry-After": "2"})  # the portal sends it again
    assert state.books["wcs"].applied == {}
    state.listeners.append(lambda kind, message_type, message: heard.append(message_type))
    state.starting = False
    status, body, _ = state.receive("wcs", "/wcs/instructions", headers, b'{"data": {}}')
    assert (status, body["status"], heard) == (200, "applied", ["wcs.work_instruction"])
