"""Reservations per second through ``reservation_reserve_lines`` versus a plain SQL conditional UPDATE.

The service figure is one 1-line demand per call, each call its own transaction, from
1 and from 16 processes (multiprocessing with the spawn context; each child sets Django
up on the benchmark database). The baseline is pgbench running the bare conditional
UPDATE the service is built around, over the same stock rows, at 1 and 16 connections.
Both run for a fixed duration; the service counts only calls that reserved a unit.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ITEMS = 200
LOCATIONS = 3
ON_HAND = 100_000_000  # plenty: no call may fail for want of stock
DURATION_S = float(os.environ.get("BENCH_RESERVATIONS_SECONDS", "8"))
PROCESSES = 16
WAREHOUSE_CODE = "BENCH-RES"

SQL_SCRIPT = """\\set id random({low}, {high})
UPDATE inventory_stocklevel SET reserved = reserved + 1 WHERE id = :id AND on_hand - reserved - quarantined >= 1;
"""


def run(context) -> dict[str, float]:
    low, high = _seed()
    service_1 = _service_rate(context, processes=1)
    service_16 = _service_rate(context, processes=PROCESSES)
    sql_1 = _pgbench_rate(context, low=low, high=high, clients=1, threads=1)
    sql_16 = _pgbench_rate(context, low=low, high=high, clients=PROCESSES, threads=2)
    return {
        "reservations_service_1proc_per_s": round(service_1, 1),
        "reservations_service_16proc_per_s": round(service_16, 1),
        "reservations_sql_baseline_1conn_per_s": round(sql_1, 1),
        "reservations_sql_baseline_16conn_per_s": round(sql_16, 1),
        "reservations_1proc_vs_sql_ratio": round(service_1 / sql_1, 3) if sql_1 else 0.0,
        "reservations_16proc_vs_sql_ratio": round(service_16 / sql_16, 3) if sql_16 else 0.0,
    }


# --- seeding -------------------------------------------------------------------------


def _seed() -> tuple[int, int]:
    """A warehouse with ITEMS items × LOCATIONS pick locations, stocked through the ledger; returns the stock id range."""
    from inventory import services
    from inventory.models import Item, Location, StockLevel, Warehouse
    from portal.actors import Actor

    actor = Actor.system("bench-seed")
    warehouse, _ = Warehouse.objects.get_or_create(code=WAREHOUSE_CODE, defaults={"name": "Benchmark warehouse"})
    locations = [
        Location.objects.get_or_create(
            warehouse=warehouse,
            code=f"P-{index:02d}",
            defaults={"zone": "A", "kind": Location.Kind.PICK, "pick_sequence": index * 10},
        )[0]
        for index in range(1, LOCATIONS + 1)
    ]
    Item.objects.bulk_create(
        [Item(sku=f"BENCH-{index:04d}", description=f"Benchmark item {index}") for index in range(1, ITEMS + 1)],
        ignore_conflicts=True,
    )
    for item in Item.objects.filter(sku__startswith="BENCH-").order_by("pk"):
        for location in locations:
            if not StockLevel.objects.filter(item=item, location=location, on_hand__gt=0).exists():
                services.stock_receive(
                    item=item, location=location, quantity=ON_HAND, actor=actor, reason="Benchmark opening stock"
                )
    rows = StockLevel.objects.filter(location__warehouse=warehouse).order_by("pk").values_list("pk", flat=True)
    ids = list(rows)
    assert ids == list(range(ids[0], ids[-1] + 1)), "stock ids are expected to be contiguous in a fresh database"
    return ids[0], ids[-1]


# --- the service ---------------------------------------------------------------------


def _service_rate(context, *, processes: int) -> float:
    """Successful 1-unit reservations per second summed over `processes` spawned workers."""
    from django.db import connections

    connections.close_all()  # children open their own; nothing inherited
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    start_at = ctx.Value("d", 0.0)
    workers = [
        ctx.Process(target=_service_worker, args=(context.env, index, ready, start_at, results), daemon=True)
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=300)  # every child has Django set up and a warm connection
    start_at.value = time.time() + 0.2
    ready.wait(timeout=60)
    reserved = [results.get(timeout=DURATION_S + 120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    failures = [r for r in reserved if isinstance(r, str)]
    if failures:
        raise RuntimeError(f"benchmark worker failed: {failures[0]}")
    return sum(count for count, _ in reserved) / max(elapsed for _, elapsed in reserved)


def _service_worker(env: dict, index: int, ready, start_at, results) -> None:
    """One benchmark process: reserve 1 unit of a random item per call until the clock runs out."""
    try:
        os.environ.update(env)
        import django

        django.setup()
        from inventory.models import Item, Warehouse
        from inventory.services import LineDemand, reservation_reserve_lines
        from portal.actors import Actor

        rng = random.Random(index)
        actor = Actor.system("bench")
        warehouse = Warehouse.objects.get(code=WAREHOUSE_CODE)
        item_ids = list(Item.objects.filter(sku__startswith="BENCH-").values_list("pk", flat=True))
        ready.wait(timeout=300)
        ready.wait(timeout=60)
        while time.time() < start_at.value:
            time.sleep(0.001)
        started = time.perf_counter()
        deadline = started + DURATION_S
        line_id = index * 10_000_000
        reserved = 0
        while time.perf_counter() < deadline:
            line_id += 1
            demand = LineDemand(
                order_line_id=line_id, order_number=f"BENCH-{index}-{line_id}", item_id=rng.choice(item_ids), quantity=1
            )
            allocation = reservation_reserve_lines(
                warehouse=warehouse, demands=[demand], actor=actor, reason="Benchmark"
            )
            reserved += allocation[0].reserved
        results.put((reserved, time.perf_counter() - started))
    except Exception as error:  # reported to the parent, which fails the benchmark
        results.put(f"{type(error).__name__}: {error}")
        raise


# --- the SQL baseline ----------------------------------------------------------------


def _pgbench_binary() -> str:
    from portal import embedded

    try:
        path = embedded._pg_bin("pgbench")
        if Path(path).exists():
            return path
    except RuntimeError:
        pass
    found = shutil.which("pgbench")
    if not found:
        raise RuntimeError("pgbench not found (neither the embedded PostgreSQL's nor on PATH)")
    return found


def _pgbench_rate(context, *, low: int, high: int, clients: int, threads: int) -> float:
    """Transactions per second of pgbench running the bare conditional UPDATE."""
    info = context.pg_conninfo()
    with tempfile.TemporaryDirectory() as directory:
        script = Path(directory) / "reserve.sql"
        script.write_text(SQL_SCRIPT.format(low=low, high=high))
        command = [
            _pgbench_binary(),
            "-n",
            "-f",
            str(script),
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(int(DURATION_S)),
            "-h",
            info["host"],
            "-p",
            info["port"],
            "-U",
            info["user"],
            info["dbname"],
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed: {completed.stderr.strip() or completed.stdout.strip()}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", completed.stdout)
    if not match:
        raise RuntimeError(f"could not read tps from pgbench output:\n{completed.stdout}")
    return float(match.group(1))
