"""The shared part of every partner adapter: signing, the HTTP client with timeouts, reading the answer."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass

import httpx
from django.core.serializers.json import DjangoJSONEncoder

USER_AGENT = "distribution-portal-outbound/1"

_clients: dict[int, httpx.Client] = {}


def http_client() -> httpx.Client:
    """One keep-alive client per process (worker processes are forked, so never share a parent's)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=False)
        _clients.clear()
        _clients[pid] = client
    return client


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC of "<timestamp>.<raw body>">`` with the partner's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode(body: dict) -> bytes:
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt came to: a status code, or an error when the partner could not be reached."""

    status_code: int | None
    error: str = ""
    retry_after: float | None = None
    duration_ms: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Adapter:
    """A plain JSON adapter: POST the canonical payload to ``/messages/<type>``. Subclasses map per type."""

    kind = ""
    # message type -> path under the partner's base URL
    paths: dict[str, str] = {}

    def path_for(self, message) -> str:
        return self.paths.get(message.message_type, f"/messages/{message.message_type}")

    def body_for(self, message) -> dict:
        """The partner's representation of the message; the envelope carries ids for its own dedupe."""
        return {
            "message_id": message.pk,
            "message_type": message.message_type,
            "ordering_key": message.ordering_key,
            "order": message.order_number or None,
            "data": self.translate(message.message_type, message.payload),
        }

    def translate(self, message_type: str, payload: dict) -> dict:
        return payload

    def headers_for(self, message, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": str(message.idempotency_key),
            "X-Message-Id": str(message.pk),
            "X-Message-Type": message.message_type,
            "X-Ordering-Key": message.ordering_key,
            "X-Attempt": str(message.attempts),
            "X-Timestamp": timestamp,
            "X-Signature": sign(message.partner.webhook_secret or "", timestamp, body),
        }

    def send(self, message) -> DeliveryResult:
        """POST one message; never raises for network trouble (that is a failed attempt, not a crash)."""
        partner = message.partner
        url = partner.outbound_base_url.rstrip("/") + self.path_for(message)
        body = encode(self.body_for(message))
        timeout = httpx.Timeout(partner.timeout_seconds, connect=min(partner.timeout_seconds, 3.0))
        started = time.monotonic()
        try:
            response = http_client().post(url, content=body, headers=self.headers_for(message, body), timeout=timeout)
        except httpx.TimeoutException as error:
            return DeliveryResult(None, f"timed out: {type(error).__name__}", None, _ms(started))
        except httpx.HTTPError as error:
            return DeliveryResult(None, f"unreachable: {type(error).__name__}: {error}"[:500], None, _ms(started))
        error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}: {response.text[:300]}"
        return DeliveryResult(
            response.status_code, error, parse_retry_after(response.headers.get("Retry-After")), _ms(started)
        )

    def fetch(self, partner, path: str, params: dict | None = None) -> httpx.Response:
        """A signed GET against the partner (reads such as the ERP's stock report)."""
        timestamp = str(int(time.time()))
        return http_client().get(
            partner.outbound_base_url.rstrip("/") + path,
            params=params,
            headers={"X-Timestamp": timestamp, "X-Signature": sign(partner.webhook_secret or "", timestamp, b"")},
            timeout=httpx.Timeout(partner.timeout_seconds, connect=min(partner.timeout_seconds, 3.0)),
        )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
