"""Fixtures and helpers for the partner API tests: a stocked warehouse, a customer, partners with tokens.

Test modules take them with ``from tests.integrations.api_support import *``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from integrations.auth import partner_token_issue
from integrations.models import Partner
from inventory import services as inventory
from inventory.models import Item, Location, Warehouse
from orchestration.models import Customer
from portal.actors import Actor

ACTOR = Actor.system("test")
BASE_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "whsec-test-secret"
SKUS = ["API-A", "API-B", "API-C"]
SHIP_TO = {"name": "Acme Retail", "lines": ["1 Dock Road"], "city": "Leeds", "postal_code": "LS1 4AP", "country": "GB"}

__all__ = [
    "ACTOR",
    "BIN",
    "SECRET",
    "SHIP_TO",
    "SKUS",
    "api_client",
    "erp",
    "event",
    "free_port",
    "make_partner",
    "network",
    "order_body",
    "other_erp",
    "PartnerClient",
    "post_as",
    "server_env",
    "sign",
    "start_process",
    "stop_process",
    "wms",
]


def make_partner(code: str, kind: str, scopes: list[str], **fields) -> tuple[Partner, str]:
    partner, _ = Partner.objects.update_or_create(
        code=code,
        defaults={"name": code.upper(), "kind": kind, "scopes": scopes, "webhook_secret": SECRET, **fields},
    )
    return partner, partner_token_issue(partner=partner, actor=ACTOR, reason="Test token")


@pytest.fixture
def network(db):
    """Warehouse DCA with two pick locations, three items (100 units each in P-01), customer acme."""
    warehouse, _ = Warehouse.objects.get_or_create(
        code="DCA", defaults={"name": "Test DC", "time_zone": "UTC", "default_cutoff_time": dt.time(23, 59)}
    )
    first = Location.objects.get_or_create(
        warehouse=warehouse, code="P-01", defaults={"zone": "A", "kind": Location.Kind.PICK, "pick_sequence": 10}
    )[0]
    Location.objects.get_or_create(
        warehouse=warehouse, code="P-02", defaults={"zone": "A", "kind": Location.Kind.PICK, "pick_sequence": 20}
    )
    for sku in SKUS:
        item, _ = Item.objects.get_or_create(sku=sku, defaults={"description": sku, "unit_value": Decimal("5.00")})
        inventory.stock_receive(item=item, location=first, quantity=100, actor=ACTOR, reason="Test stock")
    Customer.objects.get_or_create(
        code="acme",
        defaults={"name": "Acme", "credit_limit": Decimal("100000000"), "default_warehouse": warehouse},
    )
    return warehouse


@pytest.fixture
def erp(db):
    """An ERP partner with every scope: (partner, token)."""
    return make_partner("erp-a", Partner.Kind.ERP, [scope.value for scope in Partner.Scope])


@pytest.fixture
def other_erp(db):
    return make_partner("erp-b", Partner.Kind.STOREFRONT, [scope.value for scope in Partner.Scope])


@pytest.fixture
def wms(db):
    """A WMS partner that may only post events."""
    return make_partner("wms-a", Partner.Kind.WMS, [Partner.Scope.EVENTS_WRITE.value])


class PartnerClient:
    """Django's test client with the partner's bearer token and JSON bodies."""

    def __init__(self, token: str):
        self.client = Client()
        self.token = token

    def headers(self, extra: dict | None = None) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}", **(extra or {})}

    def get(self, path: str, params: dict | None = None, **extra):
        return self.client.get(path, params or {}, **self.headers(extra))

    def post(self, path: str, body=None, *, raw: bytes | None = None, content_type="application/json", **extra):
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(path, data=data, content_type=content_type, **self.headers(extra))

    def event(
        self,
        body: dict | bytes,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        path: str = "/api/v1/events",
        **extra,
    ):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"HTTP_X_TIMESTAMP": stamp, "HTTP_X_SIGNATURE": sign(raw, stamp, secret), **extra}
        return self.post(path, raw=raw, **headers)

    def events(self, events: list[dict], **kwargs):
        return self.event({"events": events}, path="/api/v1/events/batch", **kwargs)


def sign(raw: bytes, timestamp: str, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()


@pytest.fixture
def api_client():
    return PartnerClient


def order_body(external_ref: str | None = None, lines=None, **fields) -> dict:
    return {
        "external_ref": external_ref or f"PO-{uuid.uuid4().hex[:10]}",
        "customer": "acme",
        "ship_to": SHIP_TO,
        "requested_ship_date": dt.date.today().isoformat(),
        "service_level": "standard",
        "priority": 2,
        "lines": lines or [{"line_no": i, "sku": sku, "quantity": 2} for i, sku in enumerate(SKUS, start=1)],
        **fields,
    }


def event(kind: str, payload: dict, *, event_id: str | None = None, occurred_at: str | None = None) -> dict:
    """A partner event's body: `kind` with `payload`, a fresh event id unless given, happening now unless told."""
    from django.utils import timezone

    return {
        "event_id": event_id or f"ev-{uuid.uuid4().hex[:12]}",
        "type": kind,
        "occurred_at": occurred_at or timezone.now().isoformat(),
        "payload": payload,
    }


@pytest.fixture
def post_as(api_client, django_capture_on_commit_callbacks):
    """Post a signed event with a partner's token, then run what its commit schedules (the eager worker)."""

    def send(token: str, body: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return api_client(token).event(body)

    return send


# --- real servers and workers -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(**extra) -> dict:
    """Environment for a subprocess that must use this test's database and Redis database."""
    from django.conf import settings

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": url,
        "DATABASE_POOL_SIZE": "10",  # as make run gives the web server
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def start_process(command: list[str], env: dict, *, ready=None, timeout: float = 40) -> subprocess.Popen:
    """Start a server in a session of its own; its output goes to a temporary file, which `stop_process` returns.

    Not a pipe: nobody reads a pipe while the test runs, and a server that fills one (a burst of
    "Exceeded concurrency limit" lines is enough) blocks on its next write and stops answering.
    """
    output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - stop_process reads and closes it
    process = subprocess.Popen(
        command,
        env=env,
        cwd=BASE_DIR,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    process.output = output
    deadline = time.monotonic() + timeout
    while ready is not None and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited early:\n{_read_output(process)}")
        if ready():
            return process
        time.sleep(0.2)
    if ready is not None:
        stop_process(process)
        raise RuntimeError(f"{command[0]} did not become ready in {timeout} s")
    return process


def stop_process(process: subprocess.Popen) -> str:
    """Stop the server and every process it forked; return what it printed."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    text = _read_output(process)
    process.output.close()
    return text


def _read_output(process: subprocess.Popen) -> str:
    process.output.seek(0)
    return process.output.read()
