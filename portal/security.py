"""Request security helpers shared by login throttling, the API and the sockets."""

from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str:
    """The client's address, trusting X-Forwarded-For only for TRUSTED_PROXY_COUNT proxies.

    Each trusted proxy appends the address it received the request from, so the
    client is the entry TRUSTED_PROXY_COUNT places from the right; anything left of
    it was written by the client and cannot be trusted.
    """
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    return forwarded[-hops]
