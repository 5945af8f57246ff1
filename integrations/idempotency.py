"""`Idempotency-Key` on partner POSTs, after the IETF httpapi Idempotency-Key draft.

Per partner and key the first request wins:

* ``idempotency_claim`` inserts the key as *in progress* in its own, immediately
  committed statement (``INSERT … ON CONFLICT DO NOTHING``), so concurrent copies of the
  request in other processes see it at once;
* the winner does the work and ``idempotency_complete`` stores its response **in the same
  transaction as the work** — an order and the response that reports it commit together;
* a copy arriving while the first is in progress gets 409 ``idempotency_in_progress``; a
  copy arriving later gets the stored response replayed; the same key with a different
  body gets 422 ``idempotency_key_reused``;
* a refused request (4xx) releases its key: nothing was created, so a corrected request
  may use the key again;
* a claim whose request died (process killed) is taken over after ``locked_until``.

Keys are kept at least ``IDEMPOTENCY_KEY_TTL_HOURS`` (24) hours; a beat task deletes older ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.models import IdempotencyRecord, Partner
from portal.domain import DomainError, InvalidInput

KEY_MAX_LENGTH = 200
LOCK_SECONDS = 30


def ttl() -> dt.timedelta:
    return dt.timedelta(hours=float(getattr(settings, "IDEMPOTENCY_KEY_TTL_HOURS", 24)))


class IdempotencyInProgress(DomainError):
    status = 409
    code = "idempotency_in_progress"


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency_key_reused"


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What "the same request" means: method, path and the JSON body with key order and spacing ignored."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def check_key(key: str) -> str:
    """A usable key: printable ASCII, 1 to 200 characters (a structured-header string in the draft)."""
    key = key.strip().strip('"')
    if not key or len(key) > KEY_MAX_LENGTH or not all(32 <= ord(c) < 127 for c in key):
        raise InvalidInput(
            "Idempotency-Key must be 1 to 200 printable ASCII characters.",
            code="invalid_idempotency_key",
            fields={"Idempotency-Key": ["1 to 200 printable ASCII characters."]},
        )
    return key


@dataclass
class Claim:
    """The outcome of claiming a key: either ours to use (`record`) or a stored response to replay."""

    record: IdempotencyRecord | None = None
    replay_status: int | None = None
    replay_body: dict | None = None


CLAIM_SQL = """
INSERT INTO integrations_idempotencyrecord
       (partner_id, key, request_hash, state, status_code, response, created_at, locked_until, order_number)
VALUES (%s, %s, %s, 'in_progress', NULL, NULL, %s, %s, '')
ON CONFLICT (partner_id, key) DO NOTHING
RETURNING id
"""

TAKE_OVER_SQL = """
UPDATE integrations_idempotencyrecord SET locked_until = %s
WHERE id = %s AND state = 'in_progress' AND locked_until < %s
RETURNING id
"""


def idempotency_claim(*, partner: Partner, key: str, request_hash: str, now: dt.datetime | None = None) -> Claim:
    """Claim `key` for this request, or say why not (replay, in progress, reused with another body).

    Call it outside a transaction (the API view does): the claim must be visible to copies at once.
    """
    now = now or timezone.now()
    locked_until = now + dt.timedelta(seconds=LOCK_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, [partner.pk, key, request_hash, now, locked_until])
        row = cursor.fetchone()
    if row:
        return Claim(record=IdempotencyRecord(pk=row[0], partner=partner, key=key, request_hash=request_hash))
    existing = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
    if existing is None:  # released between our insert and read: try once more
        return idempotency_claim(partner=partner, key=key, request_hash=request_hash, now=now)
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request body.",
            fields={"Idempotency-Key": ["Already used for another request; use a new key."]},
        )
    if existing.state == IdempotencyRecord.State.DONE:
        return Claim(replay_status=existing.status_code, replay_body=existing.response)
    if existing.locked_until and existing.locked_until < now:
        with connection.cursor() as cursor:
            cursor.execute(TAKE_OVER_SQL, [locked_until, existing.pk, now])
            if cursor.fetchone():
                existing.locked_until = locked_until
                return Claim(record=existing)
    raise IdempotencyInProgress("A request with this Idempotency-Key is still being processed; retry shortly.")


def idempotency_complete(
    *, record: IdempotencyRecord, status_code: int, response: dict, order_number: str = ""
) -> None:
    """Store the first response; call inside the transaction that did the work."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.DONE,
        status_code=status_code,
        response=response,
        locked_until=None,
        order_number=order_number,
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a claim whose request was refused or failed: nothing was created under it."""
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS).delete()


def idempotency_keys_expire(*, now: dt.datetime | None = None, limit: int = 5000) -> int:
    """Delete keys older than the retention period (at least 24 hours); returns how many went."""
    cutoff = (now or timezone.now()) - ttl()
    with transaction.atomic():
        ids = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:limit]
        )
        return IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
