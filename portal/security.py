"""Request security helpers shared by login throttling, the API and the sockets."""

from __future__ import annotations

import ipaddress

from django.conf import settings

# Stands in for a missing or malformed address: login throttling stores the address in an
# IP address column, so anything that is not an IP address would fail the sign-in with a 500.
UNKNOWN_ADDRESS = "0.0.0.0"


def _ip_or_none(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request) -> str:
    """The client's address, trusting X-Forwarded-For only for TRUSTED_PROXY_COUNT proxies.

    Each trusted proxy appends the address it received the request from, so the
    client is the entry TRUSTED_PROXY_COUNT places from the right; anything left of
    it was written by the client and cannot be trusted.
    """
    remote = _ip_or_none(request.META.get("REMOTE_ADDR", "")) or UNKNOWN_ADDRESS
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    return _ip_or_none(forwarded[-hops]) or remote
