"""End to end with the partner simulator playing the WCS: 500 orders picked by machines while units jam
and go silent. Every affected task ends completed or with people, none is stuck, every fault has a
case that clears when the unit is back, and no message or event is lost.

Real parts: the ASGI server (uvicorn) takes the WCS's signed events, a Celery worker dispatches events,
delivers work instructions and processes the WCS's events, the simulator is its own process. The test
process plays the ERP (it creates the orders through the services) and beat (it runs the timers every
second instead of every ten, so the run stays short). Every queue is private to this run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from automation import services as automation
from automation.models import Equipment, EquipmentFault
from exceptions.models import Case
from integrations import delivery, inbound
from integrations.auth import partner_token_issue
from integrations.models import InboundEvent, OutboundMessage, Partner
from orchestration import services as orchestration
from orchestration.models import Order, Task
from tests.automation import factories
from tests.automation.factories import ACTOR
from tests.integrations.api_support import free_port, server_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OUTPUT = Path(__file__).resolve().parents[1] / "output"
ORDERS = 500
UNITS = ["amr-1", "amr-2", "amr-3"]
SECRET = "e2e-wcs-secret"
MACHINE_OPEN = [Task.Status.DISPATCHED, Task.Status.ACKNOWLEDGED, Task.Status.IN_PROGRESS]


@pytest.fixture
def floor(settings, monkeypatch):
    """A warehouse whose stock sits in the AMR zone, three AMR units, the WCS partner and the processes."""
    from exceptions.seed import seed_defaults
    from portal.celery import app

    seed_defaults()  # transactional tests start from empty tables
    run = uuid.uuid4().hex[:8]
    queues = {"EVENTS_QUEUE": f"e2e-events-{run}", "INBOUND_QUEUE": f"e2e-in-{run}", "OUTBOUND_QUEUE": f"e2e-out-{run}"}
    for name, queue in queues.items():
        setattr(settings, name, queue)
    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    monkeypatch.setattr(app.conf, "task_always_eager", False)

    warehouse = factories.WarehouseFactory(code="DCE")
    skus = [factories.stocked_item(warehouse, zone="AMR", sku=f"E2E-{n}", quantity=100_000).sku for n in range(6)]
    customer = factories.CustomerFactory(code="e2e")
    for code in UNITS:
        factories.unit(warehouse, code, ack_timeout_seconds=4, max_dispatch_attempts=2, heartbeat_timeout_seconds=6)
    simulator_port, portal_port = free_port(), free_port()
    partner = Partner.objects.create(
        code="wcs",
        name="Warehouse control system",
        kind=Partner.Kind.WCS,
        scopes=[Partner.Scope.EVENTS_WRITE.value],
        webhook_secret=SECRET,
        outbound_base_url=f"http://127.0.0.1:{simulator_port}/wcs",
        rate_limit_per_minute=100_000,
    )
    token = partner_token_issue(partner=partner, actor=ACTOR, reason="End-to-end run")
    env = server_env(**queues, SIMULATOR_WCS_SECRET=SECRET, OUTBOUND_BACKOFF_BASE_SECONDS="0.5")
    portal_url = f"http://127.0.0.1:{portal_port}"

    def answers(url):
        def ready():
            try:
                return httpx.get(url, timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        return ready

    processes = []
    try:
        processes.append(
            launch(
                "portal",
                [
                    str(BIN / "uvicorn"),
                    "portal.asgi:application",
                    "--port",
                    str(portal_port),
                    "--workers",
                    "2",
                    "--no-access-log",
                ],
                env,
                ready=answers(f"{portal_url}/api/schema/"),
            )
        )
        processes.append(
            launch(
                "worker",
                [
                    str(BIN / "celery"),
                    "-A",
                    "portal",
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    "3",
                    "-Q",
                    ",".join(queues.values()),
                    "-n",
                    f"e2e-{run}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "WARNING",
                ],  # fmt: skip
                env,
            )
        )
        processes.append(
            launch(
                "simulator",
                [
                    sys.executable,
                    "-m",
                    "integrations.simulator",
                    "--portal",
                    portal_url,
                    "--port",
                    str(simulator_port),
                    "--order-rate",
                    "0",
                    "--work-seconds",
                    "1",
                    "--heartbeat-seconds",
                    "1",
                    "--wcs-units",
                    ",".join(UNITS),
                    "--seed",
                    "3",
                    "--wcs-token",
                    token,
                    "--erp-token",
                    "-",
                    "--wms-token",
                    "-",
                    "--tms-token",
                    "-",
                ],  # fmt: skip
                env,
                ready=answers(f"http://127.0.0.1:{simulator_port}/_control/stats"),
            )
        )
        yield {
            "warehouse": warehouse,
            "customer": customer,
            "skus": skus,
            "simulator": f"http://127.0.0.1:{simulator_port}",
        }
    finally:
        for process in processes:
            halt(process)
        for process in processes:
            log = read_log(process.log_name)
            assert "Traceback" not in log, f"{process.log_name}: {log[-4000:]}"


def unfinished(tasks):
    """Tasks a machine holds (instruction sent, not finished) or that were never handed to anyone."""
    return tasks.filter(status__in=MACHINE_OPEN) | tasks.filter(status=Task.Status.CREATED, instruction_seq=0)


def launch(name: str, command: list[str], env: dict, *, ready=None, timeout: float = 60) -> subprocess.Popen:
    """Start a process in its own group, its output to tests/output/end_to_end_<name>.log (never a pipe that
    nobody reads: a full pipe would stall the process)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log = open(OUTPUT / f"end_to_end_{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        command, env=env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    process.log_name = name
    deadline = time.monotonic() + timeout
    while ready is not None and not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            halt(process)
            raise RuntimeError(f"{name} did not start:\n{read_log(name)[-3000:]}")
        time.sleep(0.3)
    return process


def halt(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # the leader only: celery and uvicorn shut their own children down cleanly
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def read_log(name: str) -> str:
    path = OUTPUT / f"end_to_end_{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def beat_tick() -> None:
    """What beat runs, at a one-second cadence: hand-off deadlines, heartbeats, dispatch, outbox, inbound."""
    now = timezone.now()
    automation.handoffs_expire(now=now)
    automation.equipments_check_heartbeats(now=now)
    automation.handoffs_reconcile(now=now)
    automation.handoffs_dispatch_pending(now=now)
    delivery.outbound_tick()
    inbound.events_process_due(older_than_seconds=2)


def control(simulator: str, **action) -> dict:
    return httpx.post(f"{simulator}/_control/wcs", json=action, timeout=30).json()


def test_faults_during_500_machine_picked_orders_leave_nothing_stuck_or_lost(floor):
    rng = random.Random(11)
    simulator = floor["simulator"]
    script = {
        120: {"jam": ["amr-1"]},
        220: {"silence": ["amr-2"]},
        340: {"clear": ["amr-1"]},
        420: {"resume": ["amr-2"]},
    }
    last_tick = time.monotonic()
    for index in range(ORDERS):
        lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(floor["skus"], rng.randint(1, 2))]
        order = factories.order_for(floor["customer"], floor["warehouse"], lines)
        orchestration.order_process(order=order, actor=ACTOR)
        if index in script:
            control(simulator, **script[index])
        if time.monotonic() - last_tick > 1:
            beat_tick()
            last_tick = time.monotonic()

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        beat_tick()
        machine_busy = unfinished(Task.objects.filter(kind=Task.Kind.PICK)).exists()
        backlog = (
            OutboundMessage.objects.exclude(status=OutboundMessage.Status.DELIVERED).exists()
            or InboundEvent.objects.filter(status=InboundEvent.Status.PENDING).exclude(type="wcs.heartbeat").exists()
        )
        if not machine_busy and not backlog:
            break
        time.sleep(1)
    settled_at = timezone.now()  # the WCS goes on sending heartbeats; what came before this must be done
    time.sleep(3)
    beat_tick()
    stats = httpx.get(f"{simulator}/_control/stats", timeout=30).json()

    picks = Task.objects.filter(kind=Task.Kind.PICK)
    assert Order.objects.count() == ORDERS
    stuck = unfinished(picks)
    assert not stuck.exists(), list(stuck.values("pk", "status", "equipment_code", "instruction_seq"))[:20]
    manual = picks.filter(status=Task.Status.CREATED, performer=Task.Performer.PERSON, instruction_seq__gt=0)
    finished = picks.filter(status__in=[Task.Status.COMPLETED, Task.Status.SHORT], performer=Task.Performer.MACHINE)
    assert finished.count() + manual.count() == picks.count()
    assert all(note for note in manual.values_list("outcome_note", flat=True))  # each says why it went to people
    by_machine, manual = finished.count(), manual.count()
    assert by_machine > 0 and manual > 0  # the faults sent some work to people, the rest was picked by machines

    faults = list(EquipmentFault.objects.select_related("equipment"))
    kinds = {(fault.equipment.code, fault.kind) for fault in faults}
    assert ("amr-1", "jam") in kinds and ("amr-2", "offline") in kinds, kinds
    assert all(fault.case_id for fault in faults), [f.pk for f in faults if not f.case_id]
    cases = Case.objects.filter(pk__in=[fault.case_id for fault in faults])
    assert {case.type.code for case in cases} == {"automation_fault"}
    assert {case.queue.code for case in cases} == {"warehouse_supervisor"}
    assert set(cases.values_list("status", flat=True)) <= {"auto_resolved", "resolved"}, list(
        cases.values("pk", "status", "subject_label")
    )
    assert set(Equipment.objects.values_list("status", flat=True)) == {"online"}

    assert not OutboundMessage.objects.exclude(status=OutboundMessage.Status.DELIVERED).exists()
    unsettled = InboundEvent.objects.filter(received_at__lte=settled_at).exclude(status__in=["processed", "ignored"])
    assert not unsettled.exists(), list(unsettled.values("type", "status", "last_error")[:10])
    wcs_book = stats["wcs"]
    assert wcs_book["applied"] == OutboundMessage.objects.filter(partner__kind="wcs").count()
    floor_counts = stats["wcs_floor"]["counts"]
    assert floor_counts["dropped"] > 0  # instructions to stopped units were lost on the way
    print(  # the run's story, for the log
        f"\n{ORDERS} orders, {picks.count()} picks: {by_machine} by machine, {manual} to people; "
        f"faults {sorted(kinds)}; WCS {floor_counts}; wcs messages {wcs_book}"
    )
