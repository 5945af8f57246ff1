"""Helpers the benchmark modules share: ports, server processes, waiting, and the no-op task ceiling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(command: list[str], env: dict, *, log: Path | None = None) -> subprocess.Popen:
    """Start a server in a session of its own; its output goes to `log` (a pipe nobody reads would block it)."""
    if log is None:
        return subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=output, stderr=output, start_new_session=True)


def stop_process(process: subprocess.Popen) -> None:
    """Stop the server and its children (uvicorn and Celery workers fork)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def cpu_seconds(*, pid: int | None = None, name: str | None = None) -> float:
    """User + system CPU time so far of a process and its children (`pid`), or of every process called `name`
    (Linux /proc): tells starvation from waiting, and which process spent the time."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
            fields = rest.split()
        except OSError:
            continue
        command = head.partition("(")[2]
        if (pid is not None and (int(stat.parent.name) == pid or int(fields[1]) == pid)) or command == name:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_until(condition, timeout: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise RuntimeError("benchmark timed out waiting")


def redis_client(context):
    import redis

    return redis.Redis.from_url(context.redis_url)


def noop_tasks_per_s(context, *, queue: str, count: int) -> float:
    """No-op tasks per second through the worker on `queue`: `count` of them, then a marker that sets a Redis key
    (the queue is FIFO, so the marker runs last)."""
    from integrations.inbound_tasks import noop

    connection = redis_client(context)
    warm = f"bench:noop:{uuid.uuid4().hex}"
    noop.apply_async(kwargs={"mark": warm}, queue=queue)
    wait_until(lambda: connection.exists(warm), 60)
    mark = f"bench:noop:{uuid.uuid4().hex}"
    started = time.monotonic()
    for _ in range(count):
        noop.apply_async(queue=queue)
    noop.apply_async(kwargs={"mark": mark}, queue=queue)
    wait_until(lambda: connection.exists(mark), 120, step=0.005)
    return (count + 1) / (time.monotonic() - started)
