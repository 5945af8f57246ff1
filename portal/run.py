"""`make run`: start (or attach to) the services, migrate, seed demo data, then supervise
web, worker, beat and the partner simulator together until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from portal import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# uvicorn's sans-I/O websockets protocol: the live queues push a hint to every open tab, and it
# sends them for about a fifth less CPU than the default implementation, which under load shows
# as a several times shorter tail (bench: make bench ARGS=queues).
WEBSOCKET_IMPLEMENTATION = "websockets-sansio"


def processes(port: int) -> dict[str, str]:
    bin_dir = Path(PYTHON).parent
    var = embedded.VAR_DIR
    procs = {
        "web": f"{bin_dir}/uvicorn portal.asgi:application --host {os.environ.get('HOST', '127.0.0.1')} --port {port}"
        f" --ws {WEBSOCKET_IMPLEMENTATION} --no-server-header --log-level warning",
        "worker": f"{bin_dir}/celery -A portal worker --loglevel WARNING --concurrency 2 -Q celery,outbound,inbound"
        " --without-mingle --without-gossip",
        "beat": f"{bin_dir}/celery -A portal beat --loglevel WARNING --schedule {var}/celerybeat-schedule",
    }
    simulator = BASE_DIR / "integrations" / "simulator" / "__main__.py"
    if simulator.exists():
        procs["simulator"] = f"{PYTHON} -m integrations.simulator --portal http://127.0.0.1:{port}"
    return procs


def manage(*args: str, env: dict) -> None:
    subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args], check=True, env=env, cwd=BASE_DIR)


def main() -> int:
    from honcho.manager import Manager

    port = int(os.environ.get("PORT", "8000"))
    started_embedded = embedded.uses_embedded()
    urls = embedded.ensure_services()
    env = {**os.environ, "DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    try:
        print("Migrating the database ...", flush=True)
        manage("migrate", "--noinput", env=env)
        manage("seed_demo", "--if-empty", env=env)
        # Collected once, static files are served from here with gzip copies beside them (whitenoise).
        manage("collectstatic", "--noinput", "-v", "0", env=env)
        print(
            f"\n  Portal:   http://127.0.0.1:{port}/\n  Admin:    http://127.0.0.1:{port}/admin/\n"
            f"  API docs: http://127.0.0.1:{port}/api/docs/\n  Health:   http://127.0.0.1:{port}/healthz\n"
            "  Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        manager = Manager()
        # Workers are single-threaded and keep their connection; web request threads borrow from a pool.
        worker_env = {**env, "DATABASE_CONN_MAX_AGE": os.environ.get("DATABASE_CONN_MAX_AGE", "60")}
        # Web processes share a small pool of connections each: one per request thread, and two more for
        # the live sockets' session and permission reads, so a busy page never leaves a socket waiting.
        web_threads = int(os.environ.get("WEB_THREADS", "8"))
        web_env = {**env, "DATABASE_POOL_SIZE": os.environ.get("DATABASE_POOL_SIZE", str(web_threads + 2))}
        for name, command in processes(port).items():
            process_env = worker_env if name in ("worker", "beat") else web_env if name == "web" else env
            manager.add_process(name, command, env=process_env, cwd=str(BASE_DIR))
        manager.loop()
        return manager.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("Stopping embedded services ...", flush=True)
        if started_embedded["postgres"]:
            embedded.stop_postgres()
        if started_embedded["redis"]:
            embedded.stop_redis()


if __name__ == "__main__":
    sys.exit(main())
