"""Machine hand-offs: dispatch to the WCS, acknowledgement timeouts, execution events, jams and heartbeats."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from automation import inbound, services
from automation.models import Equipment, EquipmentFault, HandOff
from orchestration.models import Order, Task
from portal.actors import Actor
from portal.models import DomainEvent
from tests.automation import factories

pytestmark = pytest.mark.django_db

WCS = Actor.partner("wcs")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def seconds(n: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=n)


def wcs(kind: str, task: Task, *, seq: int | None = None, equipment: str | None = None, **payload):
    """Deliver a WCS event through the registered inbound handler, as the integrations processor does."""
    task.refresh_from_db()
    return inbound.handle(
        {
            "type": f"wcs.{kind}",
            "occurred_at": timezone.now(),
            "partner": "wcs",
            "payload": {
                "task_id": task.pk,
                "instruction_seq": task.instruction_seq if seq is None else seq,
                "equipment": task.equipment_code if equipment is None else equipment,
                **payload,
            },
        }
    )


def messages_for(task: Task):
    from integrations.models import OutboundMessage

    return list(OutboundMessage.objects.filter(ordering_key=f"wcs:task:{task.pk}").order_by("id"))


def automation_cases(equipment: Equipment):
    from exceptions.models import Case

    return Case.objects.filter(
        type__code="automation_fault", subject_type="automation.equipment", subject_id=str(equipment.pk)
    )


@pytest.fixture
def amr1(warehouse):
    return factories.unit(
        warehouse, "amr-1", now=T0, ack_timeout_seconds=30, max_dispatch_attempts=3, heartbeat_timeout_seconds=60
    )


@pytest.fixture
def amr2(warehouse):
    return factories.unit(
        warehouse, "amr-2", now=T0, ack_timeout_seconds=30, max_dispatch_attempts=3, heartbeat_timeout_seconds=60
    )


@pytest.fixture
def machine_task(warehouse, customer, amr_item, wcs_partner):
    order = factories.released_order(customer, warehouse, [(amr_item.sku, 4)])
    (task,) = factories.pick_tasks(order)
    assert task.zone == "AMR"
    return task


def test_new_task_in_a_machine_zone_is_handed_to_the_wcs_after_commit(
    warehouse, customer, amr_item, amr1, wcs_partner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        order = factories.released_order(customer, warehouse, [(amr_item.sku, 4)])
    (task,) = factories.pick_tasks(order)
    assert (task.status, task.performer, task.equipment_code, task.instruction_seq) == (
        "dispatched",
        "machine",
        "amr-1",
        1,
    )
    (message,) = messages_for(task)
    assert (message.partner_id, message.message_type, message.order_number) == (
        wcs_partner.pk,
        "wcs.work_instruction",
        order.number,
    )
    assert {
        k: message.payload[k]
        for k in (
            "instruction",
            "task_id",
            "order_id",
            "order_number",
            "instruction_seq",
            "equipment",
            "quantity",
            "sku",
        )
    } == {
        "instruction": "task.assign",
        "task_id": task.pk,
        "order_id": order.pk,
        "order_number": order.number,
        "instruction_seq": 1,
        "equipment": "amr-1",
        "quantity": 4,
        "sku": "AMR-ITEM",
    }
    handoff = HandOff.objects.get()
    assert (handoff.task_id, handoff.equipment_id, handoff.instruction_seq, handoff.status, handoff.message_id) == (
        task.pk,
        amr1.pk,
        1,
        "sent",
        message.pk,
    )


def test_task_no_unit_serves_stays_for_people(warehouse, customer, manual_item, amr1, wcs_partner):
    order = factories.released_order(customer, warehouse, [(manual_item.sku, 2)])
    (task,) = factories.pick_tasks(order)
    assert services.task_handoff(task=task, now=T0) is None
    task.refresh_from_db()
    assert (task.status, task.performer, task.instruction_seq) == ("created", "person", 0)
    assert not HandOff.objects.exists()


def test_hand_off_happy_path_dispatch_ack_start_complete(machine_task, amr1):
    handoff = services.task_handoff(task=machine_task, now=T0)
    task = Task.objects.get(pk=machine_task.pk)
    assert task.ack_deadline == seconds(30)
    assert handoff.ack_deadline == seconds(30)

    assert wcs("task.acknowledged", task).applied
    task.refresh_from_db()
    assert (task.status, task.ack_deadline) == ("acknowledged", None)
    assert HandOff.objects.get().status == "acknowledged"

    assert wcs("task.started", task).applied
    task.refresh_from_db()
    assert task.status == "in_progress"
    assert Order.objects.get(pk=task.order_id).status == Order.Status.PICKING

    assert wcs("task.completed", task, done_quantity=4).applied
    task.refresh_from_db()
    assert (task.status, task.done_quantity) == ("completed", 4)
    handoff.refresh_from_db()
    assert handoff.status == "completed" and handoff.closed_at is not None
    assert Task.objects.filter(order_id=task.order_id, kind=Task.Kind.PACK).count() == 1
    actors = set(task.history.values_list("history_actor", flat=True))
    assert {"system:wcs-dispatcher", "partner:wcs"} <= actors
    # Nothing timed out: the sweep finds nothing to do afterwards.
    assert services.handoffs_expire(now=seconds(3600)) == 0


def test_ack_timeout_retries_with_a_new_instruction_then_falls_back_to_manual(machine_task, amr1):
    services.task_handoff(task=machine_task, now=T0)
    assert services.handoffs_expire(now=seconds(29)) == 0

    assert services.handoffs_expire(now=seconds(31)) == 1
    task = Task.objects.get(pk=machine_task.pk)
    assert (task.status, task.instruction_seq, task.dispatch_attempts, task.equipment_code) == (
        "dispatched",
        2,
        2,
        "amr-1",
    )
    assert task.ack_deadline == seconds(61)
    assert [m.payload["instruction_seq"] for m in messages_for(task)] == [1, 2]
    # The WCS acknowledging the first, outdated instruction changes nothing.
    outcome = wcs("task.acknowledged", task, seq=1)
    assert not outcome.applied and "stale instruction 1" in outcome.note
    assert Task.objects.get(pk=task.pk).status == "dispatched"

    assert services.handoffs_expire(now=seconds(62)) == 1  # third attempt
    assert services.handoffs_expire(now=seconds(93)) == 1  # no attempts left: manual
    task.refresh_from_db()
    assert (task.status, task.performer, task.equipment_code, task.ack_deadline) == ("created", "person", "", None)
    assert task.instruction_seq == 4
    reason = task.history.latest("history_id").history_reason
    assert reason == (
        "No acknowledgement from amr-1 after 3 attempt(s) (timeout 30 s each): manual work for the zone AMR supervisor"
    )
    assert list(HandOff.objects.order_by("instruction_seq").values_list("instruction_seq", "status")) == [
        (1, "timed_out"),
        (2, "timed_out"),
        (3, "timed_out"),
    ]
    assert [m.message_type for m in messages_for(task)][-1] == "wcs.instruction_cancel"
    assert DomainEvent.objects.filter(name="task.fell_back_to_manual", subject_id=str(task.pk)).count() == 1
    # Manual work is never taken back by the machine.
    assert services.handoffs_dispatch_pending(now=seconds(100)) == 0
    assert services.task_handoff(task=task, now=seconds(100)) is None


def test_retry_goes_to_another_unit_when_the_first_cannot_take_work(machine_task, amr1, amr2):
    services.task_handoff(task=machine_task, now=T0)
    assert Task.objects.filter(pk=machine_task.pk).values_list("equipment_code", flat=True).get() == "amr-1"
    Equipment.objects.filter(pk=amr1.pk).update(status=Equipment.Status.MAINTENANCE)
    services.handoffs_expire(now=seconds(31))
    task = Task.objects.get(pk=machine_task.pk)
    assert (task.equipment_code, task.instruction_seq) == ("amr-2", 2)
    assert [(m.message_type, m.payload["equipment"]) for m in messages_for(task)] == [
        ("wcs.work_instruction", "amr-1"),
        ("wcs.work_instruction", "amr-2"),
        ("wcs.instruction_cancel", "amr-1"),
    ]


def test_jam_faults_the_unit_reroutes_waiting_work_raises_a_case_and_clears(
    warehouse, customer, amr_item, amr1, wcs_partner
):
    in_progress = factories.pick_tasks(factories.released_order(customer, warehouse, [(amr_item.sku, 2)]))[0]
    waiting = factories.pick_tasks(factories.released_order(customer, warehouse, [(amr_item.sku, 3)]))[0]
    for task in (in_progress, waiting):
        services.task_handoff(task=task, now=T0)
    factories.unit(warehouse, "amr-2", now=T0)  # a second fleet joins after both tasks went to amr-1
    wcs("task.acknowledged", in_progress)
    wcs("task.started", in_progress)
    wcs("task.acknowledged", waiting)

    inbound.handle(
        {
            "type": "wcs.equipment.jam",
            "partner": "wcs",
            "occurred_at": seconds(100),
            "payload": {"equipment": "amr-1", "code": "E42", "message": "tote stuck at lift"},
        }
    )
    amr1.refresh_from_db()
    assert amr1.status == Equipment.Status.FAULTED
    fault = EquipmentFault.objects.get()
    assert (fault.kind, fault.code, fault.cleared_at) == ("jam", "E42", None)
    outcomes = {entry["task_id"]: (entry["outcome"], entry["to"]) for entry in fault.affected_tasks}
    assert outcomes == {in_progress.pk: ("held_in_unit", "amr-1"), waiting.pk: ("rerouted", "amr-2")}
    waiting.refresh_from_db()
    assert (waiting.status, waiting.equipment_code, waiting.instruction_seq) == ("dispatched", "amr-2", 2)
    assert Task.objects.get(pk=in_progress.pk).status == "in_progress"
    event = DomainEvent.objects.get(name="equipment.faulted")
    assert (event.payload["fault"], event.payload["affected_tasks"], event.payload["affected_orders"]) == ("jam", 2, 2)

    (case,) = automation_cases(amr1)
    assert case.status == "open"
    assert fault.case_id == case.pk
    assert {t["task_id"] for t in case.context["affected_tasks"]} == {in_progress.pk, waiting.pk}
    assert case.summary.endswith("; 2 tasks affected"), case.summary
    assert sorted(case.context["orders"]) == sorted([in_progress.order.number, waiting.order.number])
    assert case.queue.code == "warehouse_supervisor" or "supervisor" in case.queue.code

    inbound.handle(
        {
            "type": "wcs.equipment.cleared",
            "partner": "wcs",
            "occurred_at": seconds(400),
            "payload": {"equipment": "amr-1"},
        }
    )
    amr1.refresh_from_db()
    fault.refresh_from_db()
    case.refresh_from_db()
    assert amr1.status == Equipment.Status.ONLINE
    assert fault.cleared_at is not None
    assert case.status in ("auto_resolved", "resolved")
    # The held task resumes: the WCS finishes it on the same instruction.
    assert wcs("task.completed", in_progress).applied
    assert Task.objects.get(pk=in_progress.pk).status == "completed"


def test_jam_with_no_other_unit_sends_the_waiting_work_to_people(machine_task, amr1):
    services.task_handoff(task=machine_task, now=T0)
    services.equipment_fault(equipment="amr-1", kind="fault", code="F1", now=seconds(10), actor=WCS)
    task = Task.objects.get(pk=machine_task.pk)
    assert (task.status, task.performer) == ("created", "person")
    assert task.history.latest("history_id").history_reason.endswith(
        "no other unit can take it: manual work for the zone AMR supervisor"
    )
    assert EquipmentFault.objects.get().affected_tasks[0]["outcome"] == "manual"


def test_heartbeat_loss_marks_offline_reroutes_and_auto_resolves_on_return(
    machine_task, amr1, amr2, django_capture_on_commit_callbacks
):
    services.equipment_heartbeat(equipment="amr-2", now=seconds(50), actor=WCS)
    services.task_handoff(task=machine_task, now=seconds(1))
    assert Task.objects.get(pk=machine_task.pk).equipment_code == "amr-1"

    assert services.equipments_check_heartbeats(now=seconds(59)) == 0
    assert services.equipments_check_heartbeats(now=seconds(61)) == 1
    amr1.refresh_from_db()
    assert amr1.status == Equipment.Status.OFFLINE
    task = Task.objects.get(pk=machine_task.pk)
    assert (task.equipment_code, task.instruction_seq, task.status) == ("amr-2", 2, "dispatched")
    fault = EquipmentFault.objects.get()
    assert (fault.kind, fault.code) == ("offline", "heartbeat_lost")
    assert fault.message == "No heartbeat from amr-1 for 61 s (timeout 60 s)"
    (case,) = automation_cases(amr1)
    assert case.status == "open"
    assert DomainEvent.objects.filter(name="equipment.offline").count() == 1
    assert services.equipments_check_heartbeats(now=seconds(70)) == 0  # already offline: no second case

    with django_capture_on_commit_callbacks(execute=True):
        services.equipment_heartbeat(equipment="amr-1", now=seconds(120), actor=WCS)
    amr1.refresh_from_db()
    fault.refresh_from_db()
    case.refresh_from_db()
    assert amr1.status == Equipment.Status.ONLINE
    assert fault.cleared_at == seconds(120)
    assert case.status in ("auto_resolved", "resolved")
    assert automation_cases(amr1).count() == 1


def test_heartbeats_do_not_write_history_rows(amr1):
    before = amr1.history.count()
    for n in range(5):
        services.equipment_heartbeat(equipment="amr-1", now=seconds(n), actor=WCS)
    assert amr1.history.count() == before
    amr1.refresh_from_db()
    assert amr1.last_heartbeat_at == seconds(4)


def test_events_for_another_unit_or_an_unknown_task_are_ignored(machine_task, amr1):
    services.task_handoff(task=machine_task, now=T0)
    outcome = wcs("task.completed", machine_task, equipment="amr-9")
    assert not outcome.applied and outcome.note == f"task {machine_task.pk} is with amr-1, not amr-9"
    assert not inbound.handle(
        {"type": "wcs.task.started", "payload": {"task_id": 999999, "instruction_seq": 1}}
    ).applied
    assert Task.objects.get(pk=machine_task.pk).status == "dispatched"


def test_a_machine_short_closes_the_task_short_like_a_persons_short_pick(machine_task, amr1):
    services.task_handoff(task=machine_task, now=T0)
    wcs("task.started", machine_task)
    assert wcs("task.short", machine_task, done_quantity=1).applied
    task = Task.objects.get(pk=machine_task.pk)
    assert (task.status, task.done_quantity) == ("short", 1)
    event = DomainEvent.objects.get(name="task.short_picked")
    assert (event.payload["performer"], event.payload["shortfall"], event.payload["equipment"]) == (
        "machine",
        3,
        "amr-1",
    )
    assert HandOff.objects.get().status == "short"


def test_reconcile_moves_work_held_by_a_unit_that_stopped_behind_the_dispatchers_back(machine_task, amr1, amr2):
    services.task_handoff(task=machine_task, now=T0)
    Equipment.objects.filter(pk=amr1.pk).update(status=Equipment.Status.FAULTED)
    assert services.handoffs_reconcile(now=seconds(5)) == 1
    assert Task.objects.get(pk=machine_task.pk).equipment_code == "amr-2"


def test_maintenance_from_the_board_reroutes_without_a_case(client, user_with_role, machine_task, amr1, amr2):
    from portal.roles import Role

    services.task_handoff(task=machine_task, now=T0)
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    response = client.post("/automation/equipment/amr-1/status/", {"status": "maintenance", "reason": "Battery swap"})
    assert response.status_code == 302
    amr1.refresh_from_db()
    assert (amr1.status, amr1.status_reason) == ("maintenance", "Battery swap")
    assert amr1.history.latest("history_id").history_actor == "user:sam"
    assert Task.objects.get(pk=machine_task.pk).equipment_code == "amr-2"
    assert not EquipmentFault.objects.exists()


def test_status_change_without_a_reason_is_refused_and_changes_nothing(client, user_with_role, amr1):
    from portal.roles import Role

    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    client.post("/automation/equipment/amr-1/status/", {"status": "maintenance", "reason": " "})
    amr1.refresh_from_db()
    assert amr1.status == "online"


def stalled_cases(task: Task):
    from exceptions.models import Case

    return Case.objects.filter(
        type__code="automation_fault", subject_type="orchestration.task", subject_id=str(task.pk)
    )


def test_a_task_in_progress_past_its_units_timeout_raises_one_case_until_it_completes(machine_task, amr1):
    Equipment.objects.filter(pk=amr1.pk).update(progress_timeout_seconds=600)
    services.task_handoff(task=machine_task, now=T0)
    wcs("task.started", machine_task)
    started = Task.objects.get(pk=machine_task.pk).started_at

    assert services.handoffs_detect_stalled(now=started + dt.timedelta(seconds=599)) == 0
    assert not stalled_cases(machine_task).exists()

    assert services.handoffs_detect_stalled(now=started + dt.timedelta(seconds=601)) == 1
    assert services.handoffs_detect_stalled(now=started + dt.timedelta(seconds=900)) == 0  # one case, not one per sweep
    case = stalled_cases(machine_task).get()
    assert (case.status, case.queue.code, case.order_number) == (
        "open",
        "warehouse_supervisor",
        machine_task.order.number,
    )
    assert "amr-1" in case.summary and "10 min" in case.summary
    assert case.context["equipment"] == "amr-1" and case.context["task_id"] == machine_task.pk
    assert Task.objects.get(pk=machine_task.pk).status == "in_progress"  # nothing is taken from the unit

    assert wcs("task.completed", machine_task, done_quantity=4).applied

    case.refresh_from_db()
    assert case.status == "auto_resolved"
    assert "completed" in case.resolution_note or "completed" in case.history.first().history_reason


def test_only_machine_tasks_past_their_own_units_timeout_count(machine_task, amr1, warehouse, customer, manual_item):
    Equipment.objects.filter(pk=amr1.pk).update(progress_timeout_seconds=3600)
    services.task_handoff(task=machine_task, now=T0)
    wcs("task.started", machine_task)
    started = Task.objects.get(pk=machine_task.pk).started_at
    person_order = factories.released_order(customer, warehouse, [(manual_item.sku, 1)])
    (person_task,) = factories.pick_tasks(person_order)
    Task.objects.filter(pk=person_task.pk).update(status="in_progress", started_at=started - dt.timedelta(days=1))

    assert services.handoffs_detect_stalled(now=started + dt.timedelta(seconds=1800)) == 0
    assert services.handoffs_detect_stalled(now=started + dt.timedelta(seconds=3601)) == 1
    assert not stalled_cases(person_task).exists()


def test_a_unit_a_person_took_out_stays_out_while_the_wcs_reports_it_online(machine_task, amr1, amr2, user_with_role):
    from portal.roles import Role

    sam = Actor.for_user(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    services.equipment_set_status(equipment="amr-1", status="maintenance", now=seconds(1), actor=sam, reason="Battery")
    services.equipment_heartbeat(equipment="amr-1", now=seconds(5), actor=WCS)  # powered on during the swap
    services.equipment_clear(equipment="amr-1", now=seconds(6), actor=WCS)
    amr1.refresh_from_db()
    assert (amr1.status, amr1.last_heartbeat_at) == ("maintenance", seconds(6))
    services.task_handoff(task=machine_task, now=seconds(7))
    assert Task.objects.get(pk=machine_task.pk).equipment_code == "amr-2"  # no work goes to it meanwhile

    services.equipment_set_status(equipment="amr-1", status="online", now=seconds(9), actor=sam, reason="Swapped")
    amr1.refresh_from_db()
    assert amr1.status == "online"


def test_a_stop_the_wcs_reported_is_lifted_when_the_wcs_reports_the_unit_online(amr1):
    services.equipment_heartbeat(equipment="amr-1", status="maintenance", now=seconds(1), actor=WCS)
    services.equipment_fault(equipment="amr-1", kind="jam", now=seconds(2), actor=WCS)
    services.equipment_heartbeat(equipment="amr-1", now=seconds(3), actor=WCS)
    amr1.refresh_from_db()
    assert amr1.status == "online"
