"""Per-partner request rate limit: a fixed one-minute window counted in Redis, shared by every web process.

The limit is ``Partner.rate_limit_per_minute`` (``0`` means unlimited), or the setting
``PARTNER_RATE_LIMIT_PER_MINUTE`` when set, which overrides it for every partner. Over the
limit the API answers 429 with ``Retry-After`` (seconds until the window turns). A Redis
outage lets requests through rather than refusing every partner.
"""

from __future__ import annotations

import logging
import math
import time

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
KEY = "portal:ratelimit:partner:{partner_id}:{code}:{window}"

_client: redis.Redis | None = None
_client_url = ""


def redis_client() -> redis.Redis:
    """One pooled client per process (a new connection per request would cost more than the check)."""
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        _client_url = settings.REDIS_URL
    return _client


def limit_for(partner) -> int:
    override = getattr(settings, "PARTNER_RATE_LIMIT_PER_MINUTE", None)
    return int(override) if override is not None else int(partner.rate_limit_per_minute or 0)


def hit(partner, *, now: float | None = None) -> tuple[bool, int]:
    """Count one request of `partner`; returns (allowed, seconds until the window turns)."""
    limit = limit_for(partner)
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    if limit <= 0:
        return True, 0
    key = KEY.format(partner_id=partner.pk, code=partner.code, window=window)
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS * 2)
        count, _ = pipe.execute()
    except redis.RedisError:
        logger.warning("rate limit not checked: Redis unavailable", extra={"partner": partner.code})
        return True, 0
    return count <= limit, retry_after


class PartnerRateThrottle(BaseThrottle):
    """DRF throttle over `hit`: a refused request becomes 429 with Retry-After in the one error format."""

    def allow_request(self, request, view) -> bool:
        partner = getattr(request.user, "partner", None)
        if partner is None:
            return True
        allowed, self._wait = hit(partner)
        return allowed

    def wait(self):
        return getattr(self, "_wait", WINDOW_SECONDS)
