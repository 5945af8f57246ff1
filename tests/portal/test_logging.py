"""Log lines: one JSON object each; a refused request is one line, a server error keeps its traceback."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from portal.logging import JsonFormatter
from portal.roles import Role

pytestmark = pytest.mark.django_db


def test_a_refused_page_is_logged_in_one_line_without_a_traceback(client, user_with_role, caplog):
    client.force_login(user_with_role(Role.PROCUREMENT))
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/orders/").status_code == 403

    (record,) = [record for record in caplog.records if record.name == "django.request"]
    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["status_code"]) == ("warning", 403)
    assert entry["message"] == "Forbidden (Permission denied): /orders/"
    assert "exception" not in entry


def test_a_server_error_keeps_its_traceback():
    try:
        raise RuntimeError("database went away")
    except RuntimeError:
        record = logging.getLogger("django.request").makeRecord(
            "django.request", logging.ERROR, __file__, 1, "Internal Server Error: /orders/", (), sys.exc_info(),
            extra={"status_code": 500},
        )  # fmt: skip

    entry = json.loads(JsonFormatter().format(record))

    assert "RuntimeError: database went away" in entry["exception"]
