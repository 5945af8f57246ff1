"""OpenAPI-driven fuzzing with schemathesis: no 5xx, and every answer matches the schema.

The partner API with a partner's bearer token; the queue API with a signed-in supervisor's session.

The schema is the live one at /api/schema/; requests go through the WSGI application in
process (same database transaction as the fixtures) with a valid partner token, so
generated cases reach the views rather than stopping at authentication. Bounded
examples per operation keep the run short.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import pytest
import schemathesis
from django.conf import settings as settings_module
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from integrations.models import Partner
from portal.wsgi import application
from tests.integrations.api_support import *  # noqa: F403

PARTNER_PATHS = r"^/api/v1/(orders|availability|events)"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex=PARTNER_PATHS)
queue_schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex=r"^/api/v1/queues")


@pytest.fixture
def fuzz_token(network):
    """A partner with every scope and no rate limit, plus an order it owns (so reads can find something)."""
    partner, token = make_partner(  # noqa: F405
        "fuzzer", Partner.Kind.ERP, [scope.value for scope in Partner.Scope], rate_limit_per_minute=0
    )
    PartnerClient(token).post("/api/v1/orders", order_body("PO-FUZZ"))  # noqa: F405
    return token


@pytest.fixture
def in_process(fuzz_token):
    """Like Django's test client: a request must not close the test's database connection (and transaction).

    Comes after the fixtures that use the test client, which reconnects the signal after each request.
    """
    with connection_kept():
        yield {"Authorization": f"Bearer {fuzz_token}"}


@contextmanager
def connection_kept():
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def supervisor_session(client):
    """A signed-in warehouse supervisor's session cookie (name: value)."""
    from exceptions.seed import seed_defaults
    from portal.roles import Role
    from tests.exceptions import factories

    seed_defaults()
    client.force_login(factories.person(Role.WAREHOUSE_SUPERVISOR, username="fuzz-sam"))
    with connection_kept():
        name = settings_module.SESSION_COOKIE_NAME
        yield {name: client.cookies[name].value}


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_partner_api_answers_every_input_within_its_schema(case, in_process):
    case.headers = {**(case.headers or {}), **in_process}
    sent = {}
    if case.operation.path.startswith("/api/v1/events") and not isinstance(case.body, NotSet | bytes):
        # Sign what is sent, so generated events get past the signature to the validation and the handlers.
        sent["data"] = raw = json.dumps(case.body, default=str).encode()
        stamp = str(int(time.time()))
        case.headers.update({"X-Timestamp": stamp, "X-Signature": sign(raw, stamp)})  # noqa: F405
    case.call_and_validate(checks=CHECKS, **sent)


@pytest.mark.django_db
@queue_schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_queue_api_answers_every_input_within_its_schema(case, supervisor_session):
    """Filters, sorts and cursors fuzzed against the supervisor's own queue; its code is fixed so they reach it."""
    case.cookies = {**(case.cookies or {}), **supervisor_session}
    if case.path_parameters and "code" in case.path_parameters:
        case.path_parameters["code"] = "warehouse_supervisor"
    case.call_and_validate(checks=CHECKS)
