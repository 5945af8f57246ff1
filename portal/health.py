"""Liveness of the parts the portal needs: database, Redis and at least one Celery worker."""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def redis_connection() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True, "ok"
    except Exception as error:  # any driver failure means "down"
        return False, f"unreachable: {error.__class__.__name__}"


def check_redis() -> tuple[bool, str]:
    try:
        redis_connection().ping()
        return True, "ok"
    except Exception as error:
        return False, f"unreachable: {error.__class__.__name__}"


def check_worker() -> tuple[bool, str]:
    """At least one worker heartbeat younger than WORKER_HEARTBEAT_STALE_SECONDS."""
    from portal.celery import HEARTBEAT_KEY

    try:
        client = redis_connection()
        keys = list(client.scan_iter(match=HEARTBEAT_KEY.format(hostname="*"), count=100))
        beats = [float(value) for value in client.mget(keys) if value] if keys else []
    except Exception as error:
        return False, f"heartbeat unreadable: {error.__class__.__name__}"
    if not beats:
        return False, "no worker heartbeat"
    age = time.time() - max(beats)
    if age > settings.WORKER_HEARTBEAT_STALE_SECONDS:
        return False, f"last heartbeat {age:.0f}s ago"
    return True, f"ok ({len(beats)} worker{'s' if len(beats) != 1 else ''}, last beat {age:.0f}s ago)"


CHECKS = {"database": check_database, "redis": check_redis, "worker": check_worker}


@never_cache
@require_GET
def healthz(request):
    """200 when every part is up, else 503 naming the failing parts."""
    results = {name: check() for name, check in CHECKS.items()}
    failing = [name for name, (ok, _) in results.items() if not ok]
    body = {
        "status": "ok" if not failing else "degraded",
        "failing": failing,
        "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()},
    }
    response = JsonResponse(body, status=200 if not failing else 503)
    if failing:
        # Said once, naming what is down (while a stack starts, the worker is simply not up yet),
        # instead of Django's bare "Service Unavailable" server error for the same answer.
        details = "; ".join(f"{name}: {results[name][1]}" for name in failing)
        logger.warning("health degraded: %s", details, extra={"failing": failing})
        response._has_been_logged = True  # django.utils.log.log_response's own marker
    return response
