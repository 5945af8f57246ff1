"""/healthz: 200 only when the database, Redis and a live Celery worker are all up."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from django.db import OperationalError

from portal import celery as portal_celery
from portal import health
from portal.celery import WorkerHeartbeat

pytestmark = pytest.mark.django_db

CELERY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "celery"


@pytest.fixture(autouse=True)
def heartbeat_namespace(monkeypatch, settings):
    """A heartbeat key space of this test's own.

    Parallel workers and concurrent suites share the test Redis database, so each test
    writes and reads heartbeats under a unique prefix; its keys are removed before and after.
    """
    prefix = f"portal:health:worker:test-{uuid.uuid4().hex}-"
    monkeypatch.setattr(portal_celery, "HEARTBEAT_KEY", prefix + "{hostname}")
    client = redis.Redis.from_url(settings.REDIS_URL)
    delete_keys(client, prefix)
    health.redis_connection.cache_clear()
    yield prefix
    health.redis_connection.cache_clear()
    delete_keys(client, prefix)
    client.close()


def delete_keys(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def beat(hostname: str = "worker-a") -> None:
    """Write a heartbeat exactly as a running worker's bootstep does."""
    WorkerHeartbeat(SimpleNamespace(hostname=hostname)).beat(SimpleNamespace(hostname=hostname))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_all_parts_up_is_200(client):
    beat()

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert body["checks"]["database"] == {"ok": True, "detail": "ok"}
    assert body["checks"]["redis"] == {"ok": True, "detail": "ok"}
    assert body["checks"]["worker"]["ok"] is True
    assert body["checks"]["worker"]["detail"].startswith("ok (1 worker, last beat ")
    assert response["Cache-Control"].startswith("max-age=0")


def test_two_workers_are_counted(client):
    beat("worker-a")
    beat("worker-b")

    body = client.get("/healthz").json()

    assert body["checks"]["worker"]["detail"].startswith("ok (2 workers, ")


def test_no_worker_heartbeat_is_503(client, caplog):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"] == {"ok": False, "detail": "no worker heartbeat"}
    # One warning naming what is down, not a bare server error
    logged = [(record.name, record.levelname, record.getMessage()) for record in caplog.records]
    assert ("portal.health", "WARNING", "health degraded: worker: no worker heartbeat") in logged
    assert not [entry for entry in logged if entry[0] == "django.request"]


def test_stale_worker_heartbeat_is_503(client, monkeypatch, settings):
    written_at = time.time() - settings.WORKER_HEARTBEAT_STALE_SECONDS - 15
    with monkeypatch.context() as patch:
        patch.setattr(portal_celery.time, "time", lambda: written_at)
        beat()

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["worker"]["detail"].startswith("last heartbeat ")


def test_heartbeat_expires_from_redis(heartbeat_namespace, settings):
    beat("worker-a")

    ttl = health.redis_connection().ttl(heartbeat_namespace + "worker-a")

    assert 0 < ttl <= settings.WORKER_HEARTBEAT_STALE_SECONDS * 4


def test_redis_unreachable_is_503_naming_redis(client, settings):
    beat()
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    health.redis_connection.cache_clear()

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis", "worker"]
    assert body["checks"]["redis"] == {"ok": False, "detail": "unreachable: ConnectionError"}
    assert body["checks"]["worker"] == {"ok": False, "detail": "heartbeat unreadable: ConnectionError"}
    assert body["checks"]["database"]["ok"] is True


def test_heartbeat_survives_a_redis_outage(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    health.redis_connection.cache_clear()

    beat()  # must not raise: a Redis outage may not kill the worker


class BrokenConnection:
    def cursor(self):
        raise OperationalError("connection refused")


def test_database_unreachable_is_503_naming_database(client, monkeypatch):
    beat()
    monkeypatch.setattr(health, "connection", BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database"]
    assert body["checks"]["database"] == {"ok": False, "detail": "unreachable: OperationalError"}


def test_only_get_is_allowed(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.slow
def test_a_real_worker_makes_health_ok(client, monkeypatch, settings):
    """Start `celery worker`, wait for its heartbeat to turn /healthz green, then stop it."""
    node = f"health-{uuid.uuid4().hex[:12]}"
    # The worker writes the real key "portal:health:worker:<node>@<host>"; read only this worker's key.
    monkeypatch.setattr(portal_celery, "HEARTBEAT_KEY", f"portal:health:worker:{node}{{hostname}}")
    assert client.get("/healthz").json()["failing"] == ["worker"]

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
        "DATABASE_URL": settings.DATABASE_URL,
        "REDIS_URL": settings.REDIS_URL,
    }
    command = [
        str(CELERY), "-A", "portal", "worker", "--pool", "solo", "--loglevel", "WARNING",
        "-n", f"{node}@%h", "-Q", f"{node}-queue",  # a queue of its own: it must take no one else's tasks
        "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed below; a pipe nobody reads could fill
    worker = subprocess.Popen(
        command,
        env=env,
        cwd=CELERY.parents[2],
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        body = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker.poll() is None:
            body = client.get("/healthz").json()
            if body["checks"]["worker"]["ok"]:
                break
            time.sleep(0.5)
        assert worker.poll() is None, f"worker exited early:\n{output.seek(0) or output.read()}"
        assert body["status"] == "ok", body
        assert body["failing"] == []
        assert body["checks"]["worker"]["detail"].startswith("ok (1 worker, ")
    finally:
        if worker.poll() is None:
            worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        output.close()
        delete_keys(health.redis_connection(), f"portal:health:worker:{node}")
