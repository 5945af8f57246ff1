"""Outbound partner messages delivered per second end to end, beside a no-op Celery task (the queue ceiling).

End to end: MESSAGES outbox rows written in one transaction (over KEYS ordering keys, so order per
key is kept), queued on commit, delivered by one Celery worker (prefork, 4 processes) through the ERP
adapter over HTTP to the partner simulator (a real process that checks signatures and dedupes), from
the commit to the last row marked delivered. The ceiling: the same worker draining no-op tasks.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from bench.support import free_port, noop_tasks_per_s, redis_client, start_process, stop_process, wait_until

BASE_DIR = Path(__file__).resolve().parent.parent
MESSAGES = int(os.environ.get("BENCH_OUTBOUND_MESSAGES", "2000"))
KEYS = 400
NOOPS = int(os.environ.get("BENCH_OUTBOUND_NOOPS", "2000"))
CONCURRENCY = 4


def run(context) -> dict[str, float]:
    queue = f"bench-outbound-{uuid.uuid4().hex[:8]}"
    port = free_port()
    simulator = start_process(
        [sys.executable, "-m", "integrations.simulator", "--no-drive", "--port", str(port)],
        {**context.env, "SIMULATOR_ERP_SECRET": "bench-secret"},
    )
    worker = start_process(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "portal",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(CONCURRENCY),
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        {**context.env, "OUTBOUND_QUEUE": queue},
    )
    os.environ["OUTBOUND_QUEUE"] = queue
    from django.conf import settings

    settings.OUTBOUND_QUEUE = queue
    try:
        partner = _partner(port)
        noop_rate = noop_tasks_per_s(context, queue=queue, count=NOOPS)
        outbound = _outbound_rate(partner)
    finally:
        stop_process(worker)
        stop_process(simulator)
        redis_client(context).delete(queue)
    return {
        "outbound_delivered_per_s": round(outbound["per_s"], 1),
        "outbound_latency_p95_ms": round(outbound["p95_ms"], 1),
        "outbound_noop_tasks_per_s": round(noop_rate, 1),
        "outbound_vs_noop_ratio": round(outbound["per_s"] / noop_rate, 3) if noop_rate else 0.0,
    }


def _partner(port: int):
    from integrations.models import OutboundMessage, Partner

    OutboundMessage.objects.filter(partner__code="bench-erp").delete()
    Partner.objects.filter(kind=Partner.Kind.ERP).update(is_enabled=False)
    partner, _ = Partner.objects.update_or_create(
        code="bench-erp",
        defaults={
            "name": "Benchmark ERP",
            "kind": Partner.Kind.ERP,
            "webhook_secret": "bench-secret",
            "outbound_base_url": f"http://127.0.0.1:{port}/erp",
            "is_enabled": True,
            "timeout_seconds": 5,
        },
    )
    return partner


def _outbound_rate(partner) -> dict:
    from django.db import transaction
    from django.db.models import F

    from integrations import delivery
    from integrations.models import OutboundMessage
    from integrations.outbound import message_send
    from portal.actors import Actor

    actor = Actor.system("bench")
    with transaction.atomic():
        for n in range(MESSAGES):
            key = f"order:BENCH{n % KEYS}"
            message_send(
                partner_kind="erp",
                partner=partner,
                message_type="order.accepted",
                payload={"order": f"BENCH{n % KEYS}", "n": n, "lines": [{"sku": "SKU-1", "quantity": 2}]},
                ordering_key=key,
                order_number=f"BENCH{n % KEYS}",
                actor=actor,
            )
        committed = time.monotonic()
    # the tick runs as beat would (it only finds stragglers); the clock starts at the commit
    last_tick = 0.0

    def all_delivered() -> bool:
        nonlocal last_tick
        if time.monotonic() - last_tick > 2:
            delivery.outbound_tick()
            last_tick = time.monotonic()
        return not OutboundMessage.objects.filter(partner=partner).exclude(status="delivered").exists()

    wait_until(all_delivered, 300, step=0.05)
    elapsed = time.monotonic() - committed
    latencies = list(
        OutboundMessage.objects.filter(partner=partner)
        .annotate(latency=F("delivered_at") - F("created_at"))
        .values_list("latency", flat=True)
    )
    p95 = statistics.quantiles([lat.total_seconds() * 1000 for lat in latencies], n=20)[-1]
    return {"per_s": MESSAGES / elapsed, "p95_ms": p95}
