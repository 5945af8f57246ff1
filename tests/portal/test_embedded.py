"""Embedded PostgreSQL / Redis start only for the services that have no URL configured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import redis

from portal import embedded

DATABASE_URL = "postgres://ops:secret@db.example.test:5432/portal"
REDIS_URL = "redis://cache.example.test:6379/0"


def refuse_to_start(name):
    def start():
        raise AssertionError(f"{name} must not be started when its URL is configured")

    return start


class TestUsesEmbedded:
    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({}, {"postgres": True, "redis": True}),
            ({"DATABASE_URL": "", "REDIS_URL": ""}, {"postgres": True, "redis": True}),
            ({"DATABASE_URL": DATABASE_URL}, {"postgres": False, "redis": True}),
            ({"REDIS_URL": REDIS_URL}, {"postgres": True, "redis": False}),
            ({"DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL}, {"postgres": False, "redis": False}),
        ],
    )
    def test_embedded_only_for_services_without_a_url(self, environ, expected):
        assert embedded.uses_embedded(environ) == expected

    def test_reads_the_process_environment_by_default(self, monkeypatch):
        monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
        monkeypatch.delenv("REDIS_URL", raising=False)

        assert embedded.uses_embedded() == {"postgres": False, "redis": True}


class TestEnsureServices:
    def test_configured_urls_are_returned_untouched(self, monkeypatch):
        monkeypatch.setattr(embedded, "start_postgres", refuse_to_start("PostgreSQL"))
        monkeypatch.setattr(embedded, "start_redis", refuse_to_start("Redis"))

        urls = embedded.ensure_services({"DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL})

        assert urls == embedded.ServiceUrls(database_url=DATABASE_URL, redis_url=REDIS_URL)

    def test_missing_urls_start_the_embedded_servers(self, monkeypatch):
        started = []

        def start_postgres():
            started.append("postgres")
            return "postgres://postgres@127.0.0.1:1/portal"

        def start_redis():
            started.append("redis")
            return "redis://127.0.0.1:2/0"

        monkeypatch.setattr(embedded, "start_postgres", start_postgres)
        monkeypatch.setattr(embedded, "start_redis", start_redis)

        urls = embedded.ensure_services({})

        assert started == ["postgres", "redis"]
        assert urls == embedded.ServiceUrls("postgres://postgres@127.0.0.1:1/portal", "redis://127.0.0.1:2/0")

    def test_only_the_missing_service_is_started(self, monkeypatch):
        monkeypatch.setattr(embedded, "start_postgres", refuse_to_start("PostgreSQL"))
        monkeypatch.setattr(embedded, "start_redis", lambda: "redis://127.0.0.1:2/0")

        urls = embedded.ensure_services({"DATABASE_URL": DATABASE_URL, "REDIS_URL": ""})

        assert urls == embedded.ServiceUrls(DATABASE_URL, "redis://127.0.0.1:2/0")


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until_closed(port: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(port):
            return True
        time.sleep(0.1)
    return False


def embedded_command(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portal.embedded", command],
        env=env,
        cwd=embedded.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def clean_env(**overrides: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "PORTAL_VAR_DIR", "EMBEDDED_PG_PORT", "EMBEDDED_REDIS_PORT"}
    }
    env.update(overrides)
    return env


@pytest.mark.slow
def test_embedded_redis_starts_and_stops(tmp_path):
    port = spare_port()
    env = clean_env(
        PORTAL_VAR_DIR=str(tmp_path),
        EMBEDDED_REDIS_PORT=str(port),
        DATABASE_URL="postgres://configured@127.0.0.1:1/not-started",
    )
    try:
        started = embedded_command("start", env)

        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines() == [
            "export DATABASE_URL=postgres://configured@127.0.0.1:1/not-started",
            f"export REDIS_URL=redis://127.0.0.1:{port}/0",
        ]
        assert (tmp_path / "redis" / "redis.pid").exists()
        assert not (tmp_path / "postgres").exists()
        client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=2)
        assert client.ping() is True
        client.close()
    finally:
        stopped = embedded_command("stop", env)

    assert stopped.returncode == 0, stopped.stderr
    assert wait_until_closed(port), f"embedded Redis still listening on {port}"
    assert not (tmp_path / "redis" / "redis.pid").exists()


@pytest.mark.slow
def test_embedded_postgres_starts_and_stops(tmp_path):
    port = spare_port()
    env = clean_env(
        PORTAL_VAR_DIR=str(tmp_path),
        EMBEDDED_PG_PORT=str(port),
        REDIS_URL="redis://configured:1/0",
    )
    try:
        started = embedded_command("start", env)

        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines() == [
            f"export DATABASE_URL=postgres://postgres@127.0.0.1:{port}/portal",
            "export REDIS_URL=redis://configured:1/0",
        ]
        assert not (tmp_path / "redis").exists()
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/portal", connect_timeout=5) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("portal",)
    finally:
        stopped = embedded_command("stop", env)

    assert stopped.returncode == 0, stopped.stderr
    assert wait_until_closed(port), f"embedded PostgreSQL still listening on {port}"
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
