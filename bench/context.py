"""Shared set-up for benchmarks: services, a dedicated benchmark database, Django configured on it."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from portal import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "portal_bench")


@dataclass
class BenchContext:
    database_url: str  # the benchmark database (migrated, empty but for what benchmarks seed)
    redis_url: str
    env: dict  # environment for subprocesses (DATABASE_URL points at the benchmark database)

    @classmethod
    @contextmanager
    def start(cls):
        urls = embedded.ensure_services()
        base, _, _ = urls.database_url.rpartition("/")
        database_url = f"{base}/{BENCH_DB}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": urls.redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("BENCH_REDIS_DB", "8"),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "LOG_LEVEL": "WARNING",
        }
        _recreate_database(urls.database_url, BENCH_DB)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], check=True, env=env, cwd=BASE_DIR
        )
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
        import django

        django.setup()
        yield cls(database_url=database_url, redis_url=env["REDIS_URL"], env=env)

    def pg_conninfo(self) -> dict:
        from urllib.parse import urlparse

        parsed = urlparse(self.database_url)
        return {
            "host": parsed.hostname,
            "port": str(parsed.port or 5432),
            "user": parsed.username or "postgres",
            "dbname": parsed.path.lstrip("/"),
        }


def _recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    # Connect to the maintenance database: the configured one may not exist yet.
    maintenance_url = admin_url.rpartition("/")[0] + "/postgres"
    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
