"""`make test`: attach to (or start) PostgreSQL and Redis, run the static checks, then the suite.

Embedded servers that this run started are stopped again at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from portal import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def step(title: str, command: list[str], env: dict) -> None:
    print(f"\n==> {title}", flush=True)
    result = subprocess.run(command, env=env, cwd=BASE_DIR)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def main(argv: list[str]) -> int:
    was_running = {"postgres": embedded._port_open(embedded.PG_PORT), "redis": embedded._port_open(embedded.REDIS_PORT)}
    use_embedded = embedded.uses_embedded()
    urls = embedded.ensure_services()
    env = {
        **os.environ,
        "DATABASE_URL": urls.database_url,
        "REDIS_URL": urls.redis_url,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
    }
    try:
        manage = [sys.executable, "manage.py"]
        step("ruff", [str(BIN / "ruff"), "check", "."], env)
        step("mypy: services and selectors", [str(BIN / "mypy")], env)
        step("manage.py check", [*manage, "check", "--fail-level", "WARNING"], env)
        step("migrations are up to date", [*manage, "makemigrations", "--check", "--dry-run"], env)
        workers = os.environ.get("PYTEST_WORKERS", "auto")
        step("pytest", [str(BIN / "pytest"), "-n", workers, *argv], env)
        return 0
    finally:
        if use_embedded["postgres"] and not was_running["postgres"]:
            embedded.stop_postgres()
        if use_embedded["redis"] and not was_running["redis"]:
            embedded.stop_redis()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
