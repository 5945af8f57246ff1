"""One JSON object per log line on stdout, so a log shipper can parse it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info and not _answered_with_client_error(record):
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _answered_with_client_error(record: logging.LogRecord) -> bool:
    """A request answered with a 4xx. Django logs the exception behind it (a permission refused, a page not
    found) with its traceback, but the answer was the right one and the message says what it was."""
    status = getattr(record, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500
