"""Live queue latency and queue page / API server time at 100,000 open cases, each beside a baseline.

* **Live**: a real uvicorn server and the Redis channel layer; 100 WebSocket clients (the
  ``websockets`` package, in one asyncio process, with session cookies of signed-in supervisors)
  follow the supervisor queue while two processes change it at 50 per second in total, half
  ``case_raise`` (a case appears) and half ``case_claim`` of a seeded case (a row changes). Latency is the time from the transaction's commit (an on-commit hook
  registered before the service's own) to the hint's arrival at each client, over every
  client × change pair. Baseline: a bare Redis PUBLISH → 100 subscribers at the same rate.
* **Page / API**: the queue page and the queue API in the server process (Django's request
  handling, middleware, view, template; no network), first page and a filtered page, with
  100,000 open cases in the queue, seeded by one INSERT … SELECT. Baseline: the page's own
  rows query as raw SQL.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.support import cpu_seconds, free_port
from portal.run import WEBSOCKET_IMPLEMENTATION

BASE_DIR = Path(__file__).resolve().parent.parent
OPEN_CASES = int(os.environ.get("BENCH_QUEUES_CASES", "100000"))
CLIENTS = int(os.environ.get("BENCH_QUEUES_CLIENTS", "100"))
CHANGES_PER_S = int(os.environ.get("BENCH_QUEUES_RATE", "50"))
LIVE_SECONDS = float(os.environ.get("BENCH_QUEUES_SECONDS", "10"))
CHANGERS = 2
SERVER_PROCESSES = int(os.environ.get("BENCH_QUEUES_SERVERS", "2"))  # uvicorn workers sharing the channel layer
PAGE_SAMPLES = 60
QUEUE = "warehouse_supervisor"


def run(context) -> dict[str, float]:
    _flush_redis(context.redis_url)
    queue_id = _seed_cases()
    users = _supervisors(CLIENTS)
    figures: dict[str, float] = {}
    figures.update(_page_figures(queue_id, users[0]))
    figures.update(_live_figures(context, users, layer="configured", prefix="queues_live", batch=0))
    figures.update(_live_figures(context, users, layer="core", prefix="queues_live_core_layer", batch=1))
    figures.update(_redis_baseline(context.redis_url))
    baseline = figures.get("queues_redis_pubsub_baseline_p95_ms")
    if baseline:
        figures["queues_live_vs_redis_p95_ratio"] = round(figures["queues_live_p95_ms"] / baseline, 2)
        figures["queues_live_core_layer_vs_redis_p95_ratio"] = round(
            figures["queues_live_core_layer_p95_ms"] / baseline, 2
        )
    _flush_redis(context.redis_url)
    return figures


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    if not samples:
        return 0.0, 0.0, 0.0
    ordered = sorted(samples)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return round(statistics.median(ordered), 2), round(at(0.95), 2), round(at(0.99), 2)


def _flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # the benchmark's own Redis database: queued dispatches, sessions


# --- seeding ------------------------------------------------------------------------------


SEED_SQL = """
INSERT INTO exceptions_case (
    created_at, updated_at, status, severity, priority, materiality, customer_tier, subject_type, subject_id,
    subject_label, order_number, summary, context, occurrences, raised_by, first_response_due_at, resolution_due_at,
    first_responded_at, paused_seconds, sla_state, escalation_level, resolution_code, resolution_note, resolved_by,
    last_seq, assignee_id, warehouse_id, type_id, queue_id, sla_policy_id, at_risk_at, next_escalation_at
)
SELECT
    now() - (n %% 2880) * interval '1 minute',
    now(),
    (ARRAY['open', 'open', 'open', 'assigned', 'in_progress'])[1 + n %% 5],
    (ARRAY['low', 'medium', 'high', 'critical'])[1 + n %% 4],
    1 + n %% 4,
    (n %% 1000)::numeric,
    '',
    'bench.subject',
    'bench-' || n,
    'Bench subject ' || n,
    'BENCH-' || (n / 3),
    'Benchmark case ' || n || ': 2 of 5 picked',
    jsonb_build_object('requested', 5, 'picked', 2),
    1,
    'system:bench',
    now() - (n %% 2880) * interval '1 minute' + interval '15 minutes',
    now() - (n %% 2880) * interval '1 minute' + interval '2 days',
    NULL,
    0,
    CASE WHEN n %% 2880 > 2400 THEN 'at_risk' ELSE 'ok' END,
    0, '', '', '',
    0,
    CASE WHEN n %% 5 = 3 THEN %(assignee)s ELSE NULL END,
    NULL,
    (%(types)s::bigint[])[1 + n %% array_length(%(types)s::bigint[], 1)],
    %(queue)s,
    NULL, NULL, NULL
FROM generate_series(1, %(count)s) AS n
"""


def _seed_cases() -> int:
    """OPEN_CASES active cases in the supervisor queue (one statement), then VACUUM ANALYZE and a CHECKPOINT."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from exceptions.models import ExceptionType, Queue

    queue = Queue.objects.get(code=QUEUE)
    types = list(ExceptionType.objects.filter(default_queue=queue).values_list("pk", flat=True))
    assignee, _ = get_user_model().objects.get_or_create(username="bench-assignee")
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(SEED_SQL, {"types": types, "queue": queue.pk, "count": OPEN_CASES, "assignee": assignee.pk})
        cursor.execute("VACUUM ANALYZE exceptions_case")  # as a live table is: autovacuum must not run mid-measure
        cursor.execute("CHECKPOINT")  # the seeding's dirty pages are written now, not by a checkpoint mid-measure
    print(f"  seeded {OPEN_CASES} open cases in {time.monotonic() - started:.1f} s", flush=True)
    return queue.pk


def _supervisors(count: int) -> list:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from portal.roles import Role

    group = Group.objects.get(name=Role.WAREHOUSE_SUPERVISOR.label)
    model = get_user_model()
    model.objects.bulk_create(
        [model(username=f"bench-supervisor-{index}", is_active=True) for index in range(count)], ignore_conflicts=True
    )
    users = list(model.objects.filter(username__startswith="bench-supervisor-").order_by("pk"))
    group.user_set.add(*users)
    return users


def _session_cookie(user) -> str:
    """A signed-in session for `user`, as the login view would store it."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return store.session_key


# --- page and API server time -------------------------------------------------------------


def _page_figures(queue_id: int, user) -> dict[str, float]:
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    variants = {
        "page": ["/queues/warehouse_supervisor/", "/queues/warehouse_supervisor/?severity=critical&sort=-priority"],
        "api": [
            "/api/v1/queues/warehouse_supervisor/cases/",
            "/api/v1/queues/warehouse_supervisor/cases/?severity=critical&sort=-priority",
        ],
    }
    figures = {}
    for name, urls in variants.items():
        for url in urls:  # warm up: templates, connection, cached count for this queue sequence
            assert client.get(url).status_code == 200, url
        samples = []
        for index in range(PAGE_SAMPLES):
            url = urls[index % len(urls)]
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        p50, p95, _ = _percentiles(samples)
        figures[f"queues_{name}_100k_p50_ms"] = p50
        figures[f"queues_{name}_100k_p95_ms"] = p95
    # next pages through the keyset cursor
    first = client.get("/api/v1/queues/warehouse_supervisor/cases/").json()
    samples = []
    next_url = first["next"]
    for _ in range(20):
        if not next_url:
            break
        started = time.perf_counter()
        body = client.get(next_url.replace("http://127.0.0.1", "")).json()
        samples.append((time.perf_counter() - started) * 1000)
        next_url = body["next"]
    figures["queues_api_next_page_100k_p50_ms"] = _percentiles(samples)[0]

    sql = (
        "SELECT * FROM exceptions_case WHERE queue_id = %s AND status IN "
        "('open', 'assigned', 'in_progress', 'waiting_external', 'escalated') "
        "ORDER BY resolution_due_at ASC NULLS LAST, id ASC LIMIT 51"
    )
    count_sql = (
        "SELECT count(*) FROM exceptions_case WHERE queue_id = %s AND status IN "
        "('open', 'assigned', 'in_progress', 'waiting_external', 'escalated')"
    )
    baseline, counts = [], []
    with connection.cursor() as cursor:
        for _ in range(PAGE_SAMPLES):
            started = time.perf_counter()
            cursor.execute(sql, [queue_id])
            cursor.fetchall()
            baseline.append((time.perf_counter() - started) * 1000)
        for _ in range(10):
            started = time.perf_counter()
            cursor.execute(count_sql, [queue_id])
            cursor.fetchall()
            counts.append((time.perf_counter() - started) * 1000)
    figures["queues_home_summary_100k_uncached_p50_ms"] = _summary_uncached_ms(queue_id)
    sql_p50, sql_p95, _ = _percentiles(baseline)
    figures["queues_rows_sql_baseline_100k_p50_ms"] = sql_p50
    figures["queues_rows_sql_baseline_100k_p95_ms"] = sql_p95
    figures["queues_count_sql_100k_p50_ms"] = _percentiles(counts)[0]
    figures["queues_page_vs_sql_p50_ratio"] = round(figures["queues_page_100k_p50_ms"] / sql_p50, 2) if sql_p50 else 0.0
    figures["queues_api_vs_sql_p50_ratio"] = round(figures["queues_api_100k_p50_ms"] / sql_p50, 2) if sql_p50 else 0.0
    return figures


def _summary_uncached_ms(queue_id: int) -> float:
    """The home summary (open, breached, at risk, aging) computed afresh, as after every queue change."""
    from django.core.cache import cache

    from exceptions import selectors
    from exceptions.models import Queue

    queues = list(Queue.objects.filter(pk=queue_id))
    samples = []
    for _ in range(7):
        cache.clear()  # the benchmark's own Redis database
        started = time.perf_counter()
        selectors.queue_summaries(queues)
        samples.append((time.perf_counter() - started) * 1000)
    return _percentiles(samples)[0]


# --- live latency -------------------------------------------------------------------------


# The alternative channel layer, for comparison: the core Redis layer delivers a group message as one
# Redis list push and pop per socket per hint, where pub/sub (the portal's) sends one message per server process.
CORE_LAYER_SETTINGS = """
from portal.settings import *  # noqa
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                              "CONFIG": {"hosts": [REDIS_URL], "prefix": "portal:channels"}}}
"""


def _live_figures(context, users, *, layer: str, prefix: str, batch: int) -> dict[str, float]:
    """Latency of live hints through `layer` ("configured": the portal's channel layer, or "core")."""
    from django.conf import settings
    from django.db import connections

    cookies = [f"{settings.SESSION_COOKIE_NAME}={_session_cookie(user)}" for user in users]
    connections.close_all()
    port = free_port()
    env = {**context.env, "DATABASE_POOL_SIZE": "10", "LOG_LEVEL": "WARNING"}  # as make run starts the web server
    if layer == "core":
        directory = Path(tempfile.mkdtemp(prefix="bench-queues-"))
        (directory / "bench_core_layer_settings.py").write_text(CORE_LAYER_SETTINGS)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH", "")]))
        env["DJANGO_SETTINGS_MODULE"] = "bench_core_layer_settings"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "portal.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(SERVER_PROCESSES),
            "--ws",
            WEBSOCKET_IMPLEMENTATION,  # as make run starts the web server
        ],
        cwd=BASE_DIR,
        env=env,
    )
    try:
        _wait_for_port(port, server)
        ctx = multiprocessing.get_context("spawn")
        received = ctx.Queue()
        ready = ctx.Event()
        stop = ctx.Event()
        listener = ctx.Process(target=_clients_main, args=(port, cookies, ready, stop, received), daemon=True)
        listener.start()
        if not ready.wait(timeout=60):
            raise RuntimeError("the WebSocket clients did not all connect")
        committed = ctx.Queue()
        start_at = time.time() + 1.0
        changers = [
            ctx.Process(
                target=_changer_main,
                args=(
                    env,
                    index,
                    CHANGES_PER_S / CHANGERS,
                    LIVE_SECONDS,
                    start_at,
                    committed,
                    users[index].pk,
                    batch * CHANGERS + index,
                ),
                daemon=True,
            )
            for index in range(CHANGERS)
        ]
        watched = (("server", server.pid), ("clients", listener.pid))
        cpu_before = {name: cpu_seconds(pid=pid) for name, pid in watched}
        waited_before = _runqueue_wait_seconds(server.pid)
        wall_before = time.monotonic()
        for changer in changers:
            changer.start()
        commits: dict[tuple[str, int], float] = {}
        for _ in changers:
            result = committed.get(timeout=LIVE_SECONDS + 120)
            if isinstance(result, str):
                raise RuntimeError(f"changer failed: {result}")
            commits.update({(queue, seq): at for queue, seq, at in result})
        time.sleep(2.0)  # let the last hints arrive
        wall = time.monotonic() - wall_before
        cpu_share = {name: round((cpu_seconds(pid=pid) - cpu_before[name]) / wall, 3) for name, pid in watched}
        server_waited = round((_runqueue_wait_seconds(server.pid) - waited_before) / wall, 3)
        stop.set()
        arrivals = received.get(timeout=60)
        listener.join(timeout=10)
        for changer in changers:
            changer.join(timeout=10)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = [(at - commits[key]) * 1000 for key, at in arrivals if key in commits]
    expected = len(commits) * CLIENTS
    p50, p95, p99 = _percentiles(latencies)
    figures = {
        "clients": CLIENTS,
        "server_processes": SERVER_PROCESSES,
        "changes_per_s": round(len(commits) / LIVE_SECONDS, 1),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "delivered_share": round(len(latencies) / expected, 4) if expected else 0.0,
        "server_cpu_share": cpu_share["server"],
        "server_runqueue_wait_share": server_waited,
        "clients_cpu_share": cpu_share["clients"],
    }
    return {f"{prefix}_{key}": value for key, value in figures.items()}


def _runqueue_wait_seconds(pid: int) -> float:
    """Time the server's threads were ready to run but waited for a CPU (Linux schedstat): other load on the machine."""
    total = 0
    for process in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if int(process.name) != pid and parent != pid:
                continue
            for task in (process / "task").iterdir():
                total += int((task / "schedstat").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _wait_for_port(port: int, server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("uvicorn exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("uvicorn did not start")


def _clients_main(port: int, cookies: list[str], ready, stop, received) -> None:
    """CLIENTS sockets in one asyncio loop; reports [((queue, seq), arrival time)] when told to stop."""
    asyncio.run(_clients(port, cookies, ready, stop, received))


async def _clients(port: int, cookies: list[str], ready, stop, received) -> None:
    import websockets

    arrivals: list[tuple[tuple[str, int], float]] = []

    async def follow(socket_) -> None:
        async for raw in socket_:
            now = time.time()
            message = json.loads(raw)
            if message.get("type") == "queue_change":
                arrivals.append(((message["queue"], message["seq"]), now))

    sockets = []
    for cookie in cookies:
        socket_ = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/live/",
            additional_headers={"Cookie": cookie},
            origin=f"http://127.0.0.1:{port}",
            max_queue=None,
        )
        hello = json.loads(await socket_.recv())
        assert hello.get("type") == "hello" and f"role.{QUEUE}" in hello["groups"], hello
        sockets.append(socket_)
    tasks = [asyncio.create_task(follow(socket_)) for socket_ in sockets]
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    for socket_ in sockets:
        await socket_.close()
    received.put(arrivals)


def _changer_main(
    env: dict, index: int, rate: float, seconds: float, start_at: float, committed, user_id: int, batch: int
) -> None:
    """At `rate` per second, alternately raise a case and claim a seeded one (a case appears, a row changes);
    report (queue, seq, commit time) for each."""
    try:
        os.environ.update(env)
        sys.path[:0] = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path]
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import transaction

        from exceptions.models import Case, QueueChange
        from exceptions.services import case_claim, case_raise
        from portal.actors import Actor

        count = int(seconds * rate)
        system = Actor.system("bench-live")
        person = Actor.for_user(get_user_model().objects.get(pk=user_id))
        claimable = list(
            Case.objects.filter(subject_type="bench.subject", status=Case.Status.OPEN, assignee__isnull=True)
            .order_by("id")
            .values_list("id", flat=True)[batch * count : (batch + 1) * count]
        )
        results = []
        interval = 1.0 / rate
        while time.time() < start_at:
            time.sleep(0.001)
        for number in range(count):
            pause = start_at + number * interval - time.time()
            if pause > 0:
                time.sleep(pause)
            stamp: dict = {}
            with transaction.atomic():
                # Runs first among the on-commit hooks: the moment the change is durable, before the hint is sent.
                transaction.on_commit(lambda stamp=stamp: stamp.setdefault("at", time.time()))
                if number % 2 == 0 or not claimable:
                    case = case_raise(
                        type_code="damaged_stock",
                        subject_type="bench.live",
                        subject_id=f"{index}-{number}-{start_at}",
                        summary="Benchmark: damaged carton",
                        actor=system,
                        reason="Benchmark live latency",
                    )
                else:
                    case = case_claim(case=claimable.pop(), actor=person)
            change = QueueChange.objects.filter(case=case).order_by("-seq").values_list("queue__code", "seq").first()
            results.append((change[0], change[1], stamp["at"]))
        committed.put(results)
    except Exception as error:  # reported to the parent, which fails the benchmark
        committed.put(f"{type(error).__name__}: {error}")
        raise


# --- the Redis baseline -------------------------------------------------------------------


def _redis_baseline(redis_url: str) -> dict[str, float]:
    """PUBLISH at the same rate to CLIENTS subscribers on their own connections; latency per delivery."""
    return asyncio.run(_redis_round_trips(redis_url))


async def _redis_round_trips(redis_url: str) -> dict[str, float]:
    import redis.asyncio as aioredis

    channel = "bench:queues:baseline"
    latencies: list[float] = []
    subscribers = []
    for _ in range(CLIENTS):
        connection = aioredis.Redis.from_url(redis_url)
        pubsub = connection.pubsub()
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        subscribers.append((connection, pubsub))

    async def listen(pubsub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            latencies.append((time.time() - float(message["data"])) * 1000)

    tasks = [asyncio.create_task(listen(pubsub)) for _, pubsub in subscribers]
    publisher = aioredis.Redis.from_url(redis_url)
    interval = 1.0 / CHANGES_PER_S
    started = time.time()
    for number in range(int(CHANGES_PER_S * min(LIVE_SECONDS, 5))):
        pause = started + number * interval - time.time()
        if pause > 0:
            await asyncio.sleep(pause)
        await publisher.publish(channel, repr(time.time()))
    await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    for connection, pubsub in subscribers:
        await pubsub.aclose()
        await connection.aclose()
    await publisher.aclose()
    p50, p95, p99 = _percentiles(latencies)
    return {
        "queues_redis_pubsub_baseline_p50_ms": p50,
        "queues_redis_pubsub_baseline_p95_ms": p95,
        "queues_redis_pubsub_baseline_p99_ms": p99,
    }
