"""The event outbox: a row in the caller's transaction, subscribers in it or once after commit."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

from portal import events
from portal.actors import Actor
from portal.models import DomainEvent, EventDelivery
from portal.tasks import sweep_events

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("foundation-tests")


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def only_test_subscribers():
    """Run with only the subscribers a test registers; restore the app subscribers afterwards."""
    saved = list(events._subscribers)
    events._subscribers.clear()
    yield
    events._subscribers[:] = saved


def test_emit_writes_the_outbox_row(user_with_role):
    events.subscribe("test.foundation.*", key="test.foundation.worker")(lambda event: None)
    subject = user_with_role()

    event = events.emit(
        "test.foundation.created",
        subject=subject,
        payload={"quantity": 3},
        actor=Actor.for_user(subject),
        reason="because",
    )

    row = DomainEvent.objects.get()
    assert row.pk == event.pk
    assert (row.name, row.subject_type, row.subject_id) == ("test.foundation.created", "auth.user", str(subject.pk))
    assert row.payload == {"quantity": 3}
    assert (row.actor, row.reason) == (f"user:{subject.username}", "because")
    assert row.dispatched_at is None


def test_in_transaction_subscriber_commits_with_the_event():
    seen = []

    @events.subscribe("test.foundation.*", in_transaction=True, key="test.foundation.group-writer")
    def write_group(event):
        seen.append(event.pk)
        Group.objects.create(name=f"written-by-{event.name}")

    with transaction.atomic():
        event = events.emit("test.foundation.created", actor=ACTOR)
        assert seen == [event.pk]  # ran before the transaction ended

    assert DomainEvent.objects.filter(pk=event.pk).exists()
    assert Group.objects.filter(name="written-by-test.foundation.created").exists()


def test_in_transaction_subscriber_rolls_back_with_the_change():
    seen = []

    @events.subscribe("test.foundation.*", in_transaction=True, key="test.foundation.group-writer")
    def write_group(event):
        seen.append(event.name)
        Group.objects.create(name=f"written-by-{event.name}")

    with pytest.raises(Boom), transaction.atomic():
        events.emit("test.foundation.created", actor=ACTOR)
        raise Boom

    assert seen == ["test.foundation.created"]
    assert not DomainEvent.objects.exists()
    assert not Group.objects.filter(name__startswith="written-by-").exists()


def test_a_failing_in_transaction_subscriber_aborts_the_emit():
    @events.subscribe("test.foundation.*", in_transaction=True, key="test.foundation.refuses")
    def refuse(event):
        raise Boom

    with pytest.raises(Boom):
        events.emit("test.foundation.created", actor=ACTOR)

    assert not DomainEvent.objects.exists()


def test_subscribers_only_see_matching_names(django_capture_on_commit_callbacks):
    seen = []
    events.subscribe("test.foundation.order.*", key="test.foundation.orders")(lambda event: seen.append(event.name))

    with django_capture_on_commit_callbacks(execute=True):
        events.emit("test.foundation.order.released", actor=ACTOR)
        events.emit("test.foundation.case.opened", actor=ACTOR)

    assert seen == ["test.foundation.order.released"]
    assert DomainEvent.objects.filter(dispatched_at__isnull=True).count() == 0


def test_subscribing_twice_registers_once():
    def handler(event):
        pass

    events.subscribe("test.foundation.*", key="test.foundation.once")(handler)
    events.subscribe("test.foundation.*", key="test.foundation.once")(handler)

    assert [s.key for s in events.subscribers_for("test.foundation.x", in_transaction=False)] == [
        "test.foundation.once"
    ]


def test_an_event_no_worker_subscribes_to_is_dispatched_at_birth_and_queues_nothing(
    django_capture_on_commit_callbacks,
):
    seen = []
    events.subscribe("test.foundation.*", in_transaction=True, key="test.foundation.inside")(seen.append)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event = events.emit("test.foundation.created", actor=ACTOR)

    assert seen == [event] and callbacks == []
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert sweep_events(older_than_seconds=0) == 0


def test_after_commit_subscriber_runs_once_on_commit(django_capture_on_commit_callbacks):
    seen = []

    @events.subscribe("test.foundation.*", key="test.foundation.after-commit")
    def record(event):
        seen.append(event.pk)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event = events.emit("test.foundation.created", actor=ACTOR)
        assert seen == []  # nothing runs before commit

    assert len(callbacks) == 1
    assert seen == [event.pk]
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert list(EventDelivery.objects.values_list("event_id", "handler")) == [
        (event.pk, "test.foundation.after-commit")
    ]

    # a redelivered dispatch (queue redelivery, sweep race) is a no-op
    assert events.dispatch(event.pk) == 0
    assert seen == [event.pk]
    assert EventDelivery.objects.count() == 1


def test_after_commit_subscriber_does_not_run_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    seen = []
    events.subscribe("test.foundation.*", key="test.foundation.after-commit")(lambda event: seen.append(event.pk))

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom), transaction.atomic():
        events.emit("test.foundation.created", actor=ACTOR)
        raise Boom

    assert callbacks == []
    assert seen == []
    assert not DomainEvent.objects.exists()


def test_dispatch_of_a_missing_event_runs_nothing():
    seen = []
    events.subscribe("*", key="test.foundation.everything")(lambda event: seen.append(event))

    assert events.dispatch(987654321) == 0
    assert seen == []


def test_failing_subscriber_is_retried_by_the_sweep(django_capture_on_commit_callbacks):
    calls = {"steady": 0, "flaky": 0}

    @events.subscribe("test.foundation.*", key="test.foundation.steady")
    def steady(event):
        calls["steady"] += 1
        Group.objects.create(name=f"steady-{event.pk}-{calls['steady']}")

    @events.subscribe("test.foundation.*", key="test.foundation.flaky")
    def flaky(event):
        calls["flaky"] += 1
        Group.objects.create(name=f"flaky-{event.pk}-{calls['flaky']}")
        if calls["flaky"] == 1:
            raise Boom("downstream unavailable")

    with django_capture_on_commit_callbacks(execute=True):
        event = events.emit("test.foundation.created", actor=ACTOR)

    event.refresh_from_db()
    assert calls == {"steady": 1, "flaky": 1}
    assert event.dispatched_at is None
    assert set(EventDelivery.objects.values_list("handler", flat=True)) == {"test.foundation.steady"}
    # the failed subscriber's writes rolled back with its delivery row
    assert set(Group.objects.filter(name__contains=f"-{event.pk}-").values_list("name", flat=True)) == {
        f"steady-{event.pk}-1"
    }

    assert sweep_events(older_than_seconds=0) == 1

    event.refresh_from_db()
    assert calls == {"steady": 1, "flaky": 2}
    assert event.dispatched_at is not None
    assert sorted(EventDelivery.objects.values_list("handler", flat=True)) == [
        "test.foundation.flaky",
        "test.foundation.steady",
    ]
    assert set(Group.objects.filter(name__contains=f"-{event.pk}-").values_list("name", flat=True)) == {
        f"steady-{event.pk}-1",
        f"flaky-{event.pk}-2",
    }

    # nothing left for the sweep
    assert sweep_events(older_than_seconds=0) == 0
    assert calls == {"steady": 1, "flaky": 2}


def test_sweep_leaves_recent_events_to_their_own_dispatch():
    seen = []
    events.subscribe("test.foundation.*", key="test.foundation.after-commit")(lambda event: seen.append(event.pk))
    event = events.emit("test.foundation.created", actor=ACTOR)  # on_commit never fires in this test

    assert sweep_events(older_than_seconds=60) == 0
    assert seen == []

    assert sweep_events(older_than_seconds=0) == 1
    assert seen == [event.pk]


def test_sweep_handles_at_most_limit_events_oldest_first():
    seen = []
    events.subscribe("test.foundation.*", key="test.foundation.after-commit")(lambda event: seen.append(event.pk))
    emitted = [events.emit("test.foundation.created", actor=ACTOR).pk for _ in range(3)]

    assert sweep_events(older_than_seconds=0, limit=2) == 2
    assert seen == emitted[:2]
    assert sweep_events(older_than_seconds=0, limit=2) == 1
    assert seen == emitted


@pytest.fixture
def queued(monkeypatch):
    """The event id lists handed to the dispatch queue, one per task (the tasks still run)."""
    tasks = []
    enqueue = events.enqueue_dispatch

    def record(event_ids):
        tasks.append(list(event_ids))
        enqueue(event_ids)

    monkeypatch.setattr(events, "enqueue_dispatch", record)
    return tasks


def test_a_transactions_events_are_dispatched_by_one_task_in_the_order_they_were_published(
    django_capture_on_commit_callbacks, queued
):
    seen = []
    events.subscribe("test.foundation.*", key="test.foundation.after-commit")(lambda event: seen.append(event.pk))

    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        first = events.emit("test.foundation.created", actor=ACTOR)
        several = events.emit_many("test.foundation.line", items=[(None, {"n": 1}), (None, {"n": 2})], actor=ACTOR)
        last = events.emit("test.foundation.released", actor=ACTOR)

    expected = [first.pk, *(event.pk for event in several), last.pk]
    assert len(callbacks) == 1
    assert queued == [expected]
    assert seen == expected
    assert not DomainEvent.objects.filter(dispatched_at__isnull=True).exists()


def test_a_bulk_transactions_events_are_spread_over_tasks_of_at_most_a_batch(
    django_capture_on_commit_callbacks, queued, monkeypatch
):
    monkeypatch.setattr(events, "DISPATCH_BATCH", 2)
    events.subscribe("test.foundation.*", key="test.foundation.after-commit")(lambda event: None)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        emitted = [events.emit("test.foundation.created", actor=ACTOR).pk for _ in range(5)]

    assert queued == [emitted[0:2], emitted[2:4], emitted[4:]]


def test_an_event_rolled_back_with_an_inner_savepoint_is_not_dispatched_and_the_others_go_in_one_task(
    django_capture_on_commit_callbacks, queued
):
    seen = []
    events.subscribe("test.foundation.*", key="test.foundation.after-commit")(lambda event: seen.append(event.name))

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with pytest.raises(Boom), transaction.atomic():
            events.emit("test.foundation.rolled-back-first", actor=ACTOR)
            raise Boom
        with transaction.atomic():
            inner = events.emit("test.foundation.kept-inner", actor=ACTOR)
        kept = events.emit("test.foundation.kept", actor=ACTOR)
        with pytest.raises(Boom), transaction.atomic():
            events.emit("test.foundation.rolled-back-later", actor=ACTOR)
            raise Boom

    # the first callback went with its savepoint; the released inner savepoint's callback carries the
    # rest, and the later rolled-back id rides along and is skipped
    assert len(queued) == 1 and queued[0][:2] == [inner.pk, kept.pk]
    assert seen == ["test.foundation.kept-inner", "test.foundation.kept"]
    assert list(DomainEvent.objects.order_by("pk").values_list("name", flat=True)) == [
        "test.foundation.kept-inner",
        "test.foundation.kept",
    ]
    assert sweep_events(older_than_seconds=0) == 0
