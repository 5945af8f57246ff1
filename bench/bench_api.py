"""Partner API throughput beside its ceilings: order intake vs a thin reservation endpoint, events vs a no-op task.

* **Order intake**: ``POST /api/v1/orders`` (3 lines each, bearer token, validation,
  order create → validate → credit → allocate → release, outbound messages, request
  log) served by uvicorn (``WORKERS`` processes) to 16 concurrent clients (httpx +
  asyncio in a separate process). Figures: orders/s, reserved lines/s, p95 latency.
* **Framework ceiling**: a DRF endpoint in the same server doing one raw reservation in
  SQL (the guarded ``UPDATE``), only routed with ``BENCH_ENDPOINTS=1``. Ratio: order
  intake's reserved lines/s over the thin endpoint's reservations/s. Beside both, the CPU
  milliseconds the web server's processes and PostgreSQL spent per answer: on a machine
  the load saturates, they say what an order costs and where.
* **Inbound events, end to end**: signed ``POST /api/v1/events`` (``EVENT_TYPE``, one
  subject per item) until a Celery worker (prefork, 2 processes) has processed every
  one, in events/s — beside the same worker draining no-op tasks (the queue ceiling);
  then the same with ``BATCH`` events per signed ``POST /api/v1/events/batch``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.support import (
    cpu_seconds,
    free_port,
    noop_tasks_per_s,
    redis_client,
    start_process,
    stop_process,
    wait_until,
)

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DURATION_S = float(os.environ.get("BENCH_API_SECONDS", "12"))
WARMUP_S = 3.0
CLIENTS = int(os.environ.get("BENCH_API_CLIENTS", "16"))
WORKERS = int(os.environ.get("BENCH_API_WORKERS", "4"))
EVENTS = int(os.environ.get("BENCH_API_EVENTS", "2000"))
NOOPS = int(os.environ.get("BENCH_API_NOOPS", "3000"))
BATCHED_EVENTS = int(os.environ.get("BENCH_API_BATCHED_EVENTS", "4000"))
BATCH = 50  # events per POST /api/v1/events/batch
ITEMS = 300
CUSTOMERS = int(os.environ.get("BENCH_API_CUSTOMERS", "200"))
ON_HAND = 100_000_000
WAREHOUSE = "BENCH-API"
SECRET = "bench-webhook-secret"
EVENT_TYPE = "stock.received"
QUEUE = "inbound"
LOG = Path(os.environ.get("BENCH_API_LOG", "/tmp/bench_api.log"))  # the servers' output


def run(context) -> dict[str, float]:
    token, low, high = _seed()
    port = free_port()
    env = {**context.env, "BENCH_ENDPOINTS": "1", "DATABASE_CONN_MAX_AGE": "0", "LOG_LEVEL": "WARNING"}
    server_env = {**env, "DATABASE_POOL_SIZE": "10"}  # as make run gives the web server
    server = start_process(
        [str(BIN / "uvicorn"), "portal.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(WORKERS), "--no-access-log", "--log-level", "warning"],
        server_env,
        log=LOG,
    )  # fmt: skip
    worker = None
    try:
        _wait_ready(port)
        url = f"http://127.0.0.1:{port}"
        thin, thin_cpu = _with_cpu(server, lambda: _client(url, "thin", token=token, low=low, high=high))
        orders, orders_cpu = _with_cpu(server, lambda: _client(url, "orders", token=token, customers=CUSTOMERS))
        worker = start_process(
            [str(BIN / "celery"), "-A", "portal", "worker", "--pool", "prefork", "--concurrency", "2", "-Q", QUEUE,
             "--without-mingle", "--without-gossip", "--loglevel", "WARNING", "-n", f"bench-api-{uuid.uuid4().hex[:6]}@%h"],
            {**env, "DATABASE_CONN_MAX_AGE": "60"},  # as make run gives workers: one connection per process
            log=LOG,
        )  # fmt: skip
        _purge(context)
        noop_rate = noop_tasks_per_s(context, queue=QUEUE, count=NOOPS)
        events = _events_rate(url, token, count=EVENTS)
        batched = _events_rate(url, token, count=BATCHED_EVENTS, batch=BATCH)
    finally:
        for process in (worker, server):
            if process is not None:
                stop_process(process)
    thin_rate = thin["ok_per_s"]
    lines_rate = orders["lines_per_s"]
    return {
        "api_orders_per_s": round(orders["ok_per_s"], 1),
        "api_order_reserved_lines_per_s": round(lines_rate, 1),
        "api_order_p95_ms": round(orders["p95_ms"], 1),
        "api_order_errors": orders["errors"],
        "api_thin_reservations_per_s": round(thin_rate, 1),
        "api_thin_p95_ms": round(thin["p95_ms"], 1),
        "api_order_lines_vs_thin_ratio": round(lines_rate / thin_rate, 3) if thin_rate else 0.0,
        # Where a request's time goes: CPU of the web server's processes and of PostgreSQL per answer.
        "api_thin_server_cpu_ms": _per_answer(thin_cpu["server"], thin["ok_per_s"]),
        "api_thin_db_cpu_ms": _per_answer(thin_cpu["database"], thin["ok_per_s"]),
        "api_order_server_cpu_ms": _per_answer(orders_cpu["server"], orders["ok_per_s"]),
        "api_order_db_cpu_ms": _per_answer(orders_cpu["database"], orders["ok_per_s"]),
        "api_events_processed_per_s": round(events["per_s"], 1),
        "api_event_post_p95_ms": round(events["p95_ms"], 1),
        "api_noop_tasks_per_s": round(noop_rate, 1),
        "api_events_vs_noop_ratio": round(events["per_s"] / noop_rate, 3) if noop_rate else 0.0,
        "api_events_batched_processed_per_s": round(batched["per_s"], 1),
        "api_event_batch_post_p95_ms": round(batched["p95_ms"], 1),
        "api_events_batched_vs_noop_ratio": round(batched["per_s"] / noop_rate, 3) if noop_rate else 0.0,
    }


# --- seeding ---------------------------------------------------------------------------


def _seed() -> tuple[str, int, int]:
    """A warehouse with ITEMS items in 3 pick locations, a customer, a partner; returns (token, stock id range)."""
    from decimal import Decimal

    from integrations.auth import partner_token_issue
    from integrations.models import Partner
    from inventory import services
    from inventory.models import Item, Location, StockLevel, Warehouse
    from orchestration.models import Customer
    from portal.actors import Actor

    actor = Actor.system("bench-seed")
    warehouse, _ = Warehouse.objects.get_or_create(
        code=WAREHOUSE, defaults={"name": "API benchmark warehouse", "default_cutoff_time": dt.time(23, 59)}
    )
    locations = [
        Location.objects.get_or_create(
            warehouse=warehouse, code=f"AP-{i:02d}", defaults={"zone": "A", "kind": "pick", "pick_sequence": i}
        )[0]
        for i in range(1, 4)
    ]
    Item.objects.bulk_create(
        [Item(sku=f"API-{i:04d}", description=f"API item {i}", unit_value=Decimal("1.00")) for i in range(ITEMS)],
        ignore_conflicts=True,
    )
    for item in Item.objects.filter(sku__startswith="API-").order_by("pk"):
        for location in locations:
            if not StockLevel.objects.filter(item=item, location=location, on_hand__gt=0).exists():
                services.stock_receive(item=item, location=location, quantity=ON_HAND, actor=actor, reason="Bench")
    for number in range(CUSTOMERS):
        Customer.objects.update_or_create(
            code=f"bench-api-{number:03d}",
            defaults={
                "name": f"Bench customer {number}",
                "credit_limit": Decimal("100000000000"),
                "default_warehouse": warehouse,
            },
        )
    partner, _ = Partner.objects.update_or_create(
        code="bench-erp",
        defaults={
            "name": "Bench ERP",
            "kind": Partner.Kind.ERP,
            "scopes": [scope.value for scope in Partner.Scope],
            "webhook_secret": SECRET,
            "rate_limit_per_minute": 0,
        },
    )
    token = partner_token_issue(partner=partner, actor=actor, reason="Bench")
    ids = list(StockLevel.objects.filter(location__warehouse=warehouse).order_by("pk").values_list("pk", flat=True))
    return token, ids[0], ids[-1]


# --- processes -------------------------------------------------------------------------


def _with_cpu(server, run) -> tuple[dict, dict]:
    """`run()`'s result, and the cores the web server and PostgreSQL kept busy meanwhile (CPU seconds per second)."""
    before = (cpu_seconds(pid=server.pid), cpu_seconds(name="postgres"), time.monotonic())
    result = run()
    wall = time.monotonic() - before[2]
    return result, {
        "server": (cpu_seconds(pid=server.pid) - before[0]) / wall,
        "database": (cpu_seconds(name="postgres") - before[1]) / wall,
    }


def _per_answer(cores: float, answers_per_s: float) -> float:
    return round(cores * 1000 / answers_per_s, 2) if answers_per_s else 0.0


def _wait_ready(port: int, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/availability", timeout=2).status_code == 401:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("uvicorn did not answer within a minute")


def _client(url: str, mode: str, **options) -> dict:
    """Run the load generator in its own process (so it does not share a GIL with anything measured)."""
    spec = json.dumps({"url": url, "mode": mode, **options})
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from bench.bench_api import client_main; client_main(sys.argv[1])", spec],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=DURATION_S + WARMUP_S + 300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load client failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- the load client (runs in its own process) --------------------------------------------


def client_main(spec: str) -> None:
    options = json.loads(spec)
    result = asyncio.run(_load(**options))
    print(json.dumps(result))


def _order_body(rng: random.Random, customers: int = 1) -> bytes:
    skus = rng.sample(range(ITEMS), 3)
    return json.dumps(
        {
            "external_ref": f"B-{uuid.uuid4().hex[:20]}",
            "customer": f"bench-api-{rng.randrange(customers):03d}",
            "ship_to": {"name": "Bench", "lines": ["1 Road"], "city": "Leeds", "postal_code": "LS1", "country": "GB"},
            "requested_ship_date": dt.date.today().isoformat(),
            "lines": [
                {"line_no": n, "sku": f"API-{sku:04d}", "quantity": rng.randint(1, 5)}
                for n, sku in enumerate(skus, start=1)
            ],
        }
    ).encode()


def _event_body(index: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"bench-{uuid.uuid4().hex}",
            "type": EVENT_TYPE,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "payload": {"sku": f"API-{index % ITEMS:04d}", "warehouse": WAREHOUSE, "location": "AP-02", "quantity": 1},
        }
    ).encode()


def _signed(raw: bytes) -> dict:
    stamp = str(int(time.time()))
    signature = hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {"X-Timestamp": stamp, "X-Signature": f"sha256={signature}"}


async def _load(
    url: str,
    mode: str,
    token: str = "",
    low: int = 0,
    high: int = 0,
    count: int = 0,
    customers: int = 1,
    batch: int = 1,
) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    outcomes: collections.Counter = collections.Counter()
    lines = 0
    started = time.monotonic()
    drain = mode in ("events", "batches")  # post a fixed number of events, then stop
    measure_from = started + (0 if drain else WARMUP_S)
    stop_at = measure_from + DURATION_S
    sent = iter(range(count))
    wall_started = time.time()

    async def one(client, rng) -> bool:
        nonlocal lines
        if mode == "thin":
            request = client.post(f"{url}/api/v1/bench/reserve", params={"low": low, "high": high})
        elif mode == "orders":
            request = client.post(f"{url}/api/v1/orders", content=_order_body(rng, customers), headers=headers)
        elif mode == "events":
            index = next(sent, None)
            if index is None:
                return False
            raw = _event_body(index)
            request = client.post(f"{url}/api/v1/events", content=raw, headers={**headers, **_signed(raw)})
        else:
            indexes = [index for _, index in zip(range(batch), sent, strict=False)]
            if not indexes:
                return False
            raw = b'{"events": [' + b",".join(_event_body(index) for index in indexes) + b"]}"
            request = client.post(f"{url}/api/v1/events/batch", content=raw, headers={**headers, **_signed(raw)})
        begun = time.monotonic()
        response = await request
        finished = time.monotonic()
        if begun >= measure_from and (drain or finished <= stop_at):
            latencies.append(finished - begun)
            outcomes[response.status_code] += 1
            if mode == "orders" and response.status_code == 201:
                lines += sum(1 for line in response.json()["lines"] if line["allocated_quantity"] > 0)
        return drain or finished < stop_at

    async def user(index: int) -> None:
        rng = random.Random(index)
        async with httpx.AsyncClient(timeout=60) as client:
            while await one(client, rng):
                pass

    await asyncio.gather(*(user(index) for index in range(CLIENTS)))
    elapsed = (time.monotonic() - started) if drain else DURATION_S
    ok = sum(n for status, n in outcomes.items() if 200 <= status < 300)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else 0.0
    return {
        "ok_per_s": ok / elapsed,
        "lines_per_s": lines / elapsed,
        "p95_ms": p95,
        "errors": sum(n for status, n in outcomes.items() if status >= 300),
        "statuses": dict(outcomes),
        "elapsed": elapsed,
        "started_at": wall_started,
    }


# --- events and the queue ceiling ---------------------------------------------------------


def _purge(context) -> None:
    """Forget what earlier runs left in the benchmark's Redis database (queued or unacknowledged tasks)."""
    redis_client(context).delete(QUEUE, "unacked", "unacked_index")


def _events_rate(url: str, token: str, *, count: int, batch: int = 1) -> dict:
    """Signed events posted by 16 clients (one per request, or `batch` per request to /events/batch)
    until the worker has processed every one (end to end)."""
    from integrations.models import InboundEvent

    before = InboundEvent.objects.filter(status=InboundEvent.Status.PROCESSED).count()
    mode = "events" if batch == 1 else "batches"
    posted = _client(url, mode, token=token, count=count, batch=batch)
    if posted["errors"]:
        raise RuntimeError(f"events refused: {posted['statuses']}")
    wait_until(lambda: not InboundEvent.objects.filter(status=InboundEvent.Status.PENDING).exists(), 300, step=0.05)
    elapsed = time.time() - posted["started_at"]  # from the first POST to the last event processed
    processed = InboundEvent.objects.filter(status=InboundEvent.Status.PROCESSED).count() - before
    if processed < count:
        raise RuntimeError(f"only {processed} of {count} events processed")
    return {"per_s": count / elapsed, "p95_ms": posted["p95_ms"]}
