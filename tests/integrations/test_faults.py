"""Fault tests end to end: the partner simulator as a real process, a real Celery worker subprocess consuming
the outbound queue, the test process playing beat (the tick). Data is committed (transactional_db) and the
worker points at the test database.

(a) the ERP fails for a while → messages retry, then drain in order once it recovers;
(b) a permanent refusal → dead letter + IT support case → replay delivers it (and what waited behind it);
(c) the worker is killed with SIGKILL while 1,000 messages are in flight → after a restart every message is
    delivered and the receiver applied none twice (it dedupes on the idempotency key and counts duplicates).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection, transaction
from django.utils import timezone

from integrations import delivery
from integrations.models import OutboundMessage, Partner
from integrations.outbound import message_send
from portal.actors import Actor

pytestmark = [pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).parent / "celery"
ACTOR = Actor.system("fault-test")
Status = OutboundMessage.Status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def simulator():
    """`python -m integrations.simulator --no-drive` on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "integrations.simulator", "--no-drive", "--port", str(port), "--seed", "5"],
        cwd=BASE_DIR,
        env={**os.environ, "SIMULATOR_ERP_SECRET": "fault-secret"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        stop(process)
        pytest.fail("simulator did not start")
    yield url
    stop(process)


class Control:
    def __init__(self, url: str):
        self.url = url

    def reset(self):
        httpx.post(f"{self.url}/_control/reset", json={}).raise_for_status()

    def config(self, **erp):
        httpx.post(f"{self.url}/_control/config", json={"erp": erp}).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_control/stats").json()["erp"]

    def applied(self) -> list[dict]:
        return httpx.get(f"{self.url}/_control/applied", params={"kind": "erp"}).json()


class Worker:
    """A real `celery worker` on a queue of its own, against the test database (committed data)."""

    def __init__(self, queue: str, database: str, redis_url: str):
        self.queue, self.database, self.redis_url = queue, database, redis_url
        self.process: subprocess.Popen | None = None
        self.log = open(os.environ.get("FAULT_WORKER_LOG", os.devnull), "ab")  # noqa: SIM115

    def start(self, concurrency: int = 4) -> None:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": f"postgres://{quote(db['USER'])}{':' + quote(db['PASSWORD']) if db['PASSWORD'] else ''}"
            f"@{db['HOST']}:{db['PORT']}/{self.database}",
            "REDIS_URL": self.redis_url,
            "OUTBOUND_QUEUE": self.queue,
            "OUTBOUND_BACKOFF_BASE_SECONDS": "0.3",
            "OUTBOUND_BACKOFF_MAX_SECONDS": "1.5",
            "OUTBOUND_CLAIM_SECONDS": "15",
            "LOG_LEVEL": os.environ.get("FAULT_WORKER_LOG_LEVEL", "WARNING"),
        }
        self.process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "portal",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "-Q",
                self.queue,
                "-n",
                f"{self.queue}@%h",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL to the whole worker (main process and its pool children): no shutdown, no acks."""
        stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@pytest.fixture
def outbound(transactional_db, simulator, settings, monkeypatch):
    """Partner ERP → simulator, a worker on a private queue, the producer sending to the real broker."""
    from portal.celery import app

    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)  # the namespaced key is the one read
    queue = f"outbound-test-{uuid.uuid4().hex[:8]}"
    settings.OUTBOUND_QUEUE = queue
    settings.OUTBOUND_CLAIM_SECONDS = 15
    settings.OUTBOUND_SENDING_LEASE_SECONDS = 5
    control = Control(simulator)
    control.reset()
    partner = Partner.objects.create(
        code="erp",
        name="ERP",
        kind=Partner.Kind.ERP,
        webhook_secret="fault-secret",
        outbound_base_url=f"{simulator}/erp",
        max_attempts=30,
        timeout_seconds=3,
    )
    worker = Worker(queue, connection.settings_dict["NAME"], settings.CELERY_BROKER_URL)
    worker.start()
    yield partner, control, worker
    worker.stop()
    from portal.health import redis_connection

    redis_connection().delete(queue)


def send_many(partner: Partner, count: int, keys: int) -> list[int]:
    """`count` messages over `keys` ordering keys, written in one transaction (queued on commit)."""
    ids = []
    with transaction.atomic():
        for n in range(count):
            key = f"order:SO{n % keys}"
            message = message_send(
                partner_kind="erp",
                partner=partner,
                message_type="order.accepted",
                payload={"order": f"SO{n % keys}", "n": n},
                ordering_key=key,
                order_number=f"SO{n % keys}",
                actor=ACTOR,
            )
            ids.append(message.pk)
    return ids


def drain(ids: list[int], *, timeout: float, until=Status.DELIVERED) -> dict[str, int]:
    """Play beat (the tick every half second) until every message reaches `until`; returns the status counts."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        delivery.outbound_tick()
        counts = dict(
            OutboundMessage.objects.filter(pk__in=ids).values_list("status").annotate(n=models_count()).order_by()
        )
        if counts.get(until, 0) == len(ids):
            return counts
        time.sleep(0.5)
    stuck = list(
        OutboundMessage.objects.filter(pk__in=ids)
        .exclude(status=until)
        .values("id", "status", "attempts", "next_attempt_at", "claimed_until", "ordering_key")[:5]
    )
    probe = stuck and delivery.message_deliver(message_id=stuck[0]["id"])
    pytest.fail(f"not drained in {timeout}s: {counts}; now {timezone.now()}; e.g. {stuck}; probe: {probe}")


def models_count():
    from django.db.models import Count

    return Count("id")


def assert_in_order(applied: list[dict]) -> None:
    per_key: dict[str, list[int]] = {}
    for record in applied:
        per_key.setdefault(record["ordering_key"], []).append(record["message_id"])
    for key, ids in per_key.items():
        assert ids == sorted(ids), f"{key} applied out of order: {ids}"


def test_an_erp_outage_retries_then_drains_in_order(outbound):
    partner, control, _ = outbound
    control.config(outage_seconds=600)  # down until every key's head has been tried (however slow the worker starts)

    ids = send_many(partner, 60, keys=6)
    deadline = time.monotonic() + 45
    while OutboundMessage.objects.filter(pk__in=ids, attempts__gt=0).values("ordering_key").distinct().count() < 6:
        assert time.monotonic() < deadline, "the worker never tried every key during the outage"
        time.sleep(0.2)
    assert control.stats()["applied"] == 0  # nothing got through the outage
    control.config(outage_seconds=0)
    drain(ids, timeout=45)

    stats = control.stats()
    assert stats["failed"] > 0 and stats["applied"] == 60 and stats["out_of_order"] == 0
    retried = OutboundMessage.objects.filter(pk__in=ids, attempts__gt=1).count()
    assert retried >= 6  # at least each key's head was tried during the outage
    assert_in_order(control.applied())
    assert {r["key"] for r in control.applied()} == {
        str(k) for k in OutboundMessage.objects.filter(pk__in=ids).values_list("idempotency_key", flat=True)
    }


def test_a_permanent_refusal_becomes_a_case_and_replay_delivers_it(outbound, user_with_role):
    from portal.roles import Role

    partner, control, _ = outbound
    control.config(refuse_status=422)
    first, second = send_many(partner, 2, keys=1)

    drain([first], timeout=20, until=Status.DEAD)
    time.sleep(1)
    delivery.outbound_tick()
    assert OutboundMessage.objects.get(pk=second).status == Status.PENDING  # held behind the dead letter
    case = integration_failure_case(first)

    control.config(refuse_status=None)
    support = Actor.for_user(user_with_role(Role.IT_SUPPORT, username="ivy"))
    replay(case, first, support)
    drain([first, second], timeout=20)

    applied = control.applied()
    assert [r["message_id"] for r in applied] == [first, second]
    assert control.stats()["refused"] >= 1


def integration_failure_case(message_id: int):
    """The IT support case of a dead letter, when the exceptions app is installed (None otherwise)."""
    try:
        from exceptions.models import Case
        from exceptions.seed import seed_defaults
    except ImportError:
        return None
    seed_defaults()  # transactional tests start from empty tables
    message = OutboundMessage.objects.select_related("partner").get(pk=message_id)
    case = Case.objects.filter(subject_type="integrations.outboundmessage", subject_id=str(message_id)).first()
    if case is None:  # the type did not exist when the message died; raise it the way delivery does
        delivery.raise_integration_failure(message)
        case = Case.objects.get(subject_type="integrations.outboundmessage", subject_id=str(message_id))
    assert case.type.code == "integration_failure"
    assert case.queue.code == "it_support"
    assert case.context["partner"] == "erp" and case.context["attempts"] == 1
    assert "422" in case.context["last_error"]
    return case


def replay(case, message_id: int, actor: Actor) -> None:
    """Replay through the case's resolution when it is registered, else through the service directly."""
    try:
        from exceptions.resolutions import RESOLUTIONS
        from exceptions.services import case_resolve
    except ImportError:
        RESOLUTIONS = {}
    if case is not None and "replay" in RESOLUTIONS:
        case_resolve(case=case, resolution="replay", actor=actor, reason="ERP mapping fixed")
        case.refresh_from_db()
        assert case.status == "resolved"
    else:
        from integrations.services import message_replay

        message_replay(message_id=message_id, actor=actor, reason="ERP mapping fixed")


def test_a_worker_killed_mid_flight_loses_nothing_and_applies_nothing_twice(outbound):
    partner, control, worker = outbound
    control.config(latency_ms=15)

    ids = send_many(partner, 1000, keys=200)
    deadline = time.monotonic() + 30
    while OutboundMessage.objects.filter(pk__in=ids, status=Status.DELIVERED).count() < 150:
        assert time.monotonic() < deadline, "worker did not start delivering"
        time.sleep(0.1)
    worker.kill()
    in_flight = OutboundMessage.objects.filter(pk__in=ids, status=Status.SENDING).count()
    delivered_before = OutboundMessage.objects.filter(pk__in=ids, status=Status.DELIVERED).count()
    assert delivered_before < 1000

    worker.start()
    drain(ids, timeout=50)

    stats = control.stats()
    applied = control.applied()
    assert stats["applied"] == 1000 == len(applied)
    assert len({r["key"] for r in applied}) == 1000  # each idempotency key applied exactly once
    assert stats["out_of_order"] == 0
    assert_in_order(applied)
    print(
        f"\nkilled with {in_flight} in sending, {delivered_before} delivered; duplicates deduped: {stats['duplicates']}"
    )
