"""Where reservations come from: the allocation walk (FEFO, pick sequence, reserve racks last), the same
for one line filled from the head of the walk and for lines split by the locking statement; and what a
single-line reservation holds locked while its transaction is open."""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory import services
from inventory.models import Location, StockLevel
from tests.inventory import factories
from tests.sessions import can_lock, other_session

ACTOR = factories.ACTOR
TODAY = dt.date.today()


def reserve(warehouse, *lines) -> list[list[tuple[str, int]]]:
    """Reserve `lines` ((item, quantity), …) in one call: per line, [(location code[/lot code], quantity), …]."""
    allocations = services.reservation_reserve_lines(
        warehouse=warehouse,
        demands=[factories.demand(index, item, quantity) for index, (item, quantity) in enumerate(lines, start=1)],
        actor=ACTOR,
        reason="Walk check",
    )
    levels = {level.pk: level for level in StockLevel.objects.select_related("location", "lot")}
    return [
        [(_place(levels[r.stock_level_id]), r.quantity) for r in allocation.reservations] for allocation in allocations
    ]


def _place(level: StockLevel) -> str:
    return f"{level.location.code}/{level.lot.code}" if level.lot_id else level.location.code


@pytest.fixture
def lots(item):
    item.lot_tracked = True
    item.save(update_fields=["lot_tracked"])
    return {
        name: factories.LotFactory(item=item, code=name, expires_on=TODAY + dt.timedelta(days=days))
        for name, days in [("EARLY", 10), ("LATE", 200)]
    }


@pytest.mark.django_db
class TestTheWalk:
    def test_a_line_the_first_pick_face_can_fill_comes_from_there_in_one_statement(
        self, warehouse, pick_a, pick_b, item
    ):
        factories.stock(item, pick_b, 50)
        factories.stock(item, pick_a, 5)
        with CaptureQueriesContext(connection) as queries:
            (allocation,) = services.reservation_reserve_lines(
                warehouse=warehouse, demands=[factories.demand(1, item, 5)], actor=ACTOR, reason="Walk check"
            )
        statements = [q["sql"] for q in queries if "SAVEPOINT" not in str(q["sql"])]  # the test's transaction
        assert len(statements) == 1
        assert [(r.stock_level.location.code, r.quantity) for r in allocation.reservations] == [("A-01", 5)]

    def test_a_line_the_first_pick_face_cannot_fill_is_split_in_walk_order(
        self, warehouse, pick_a, pick_b, reserve_rack, item
    ):
        factories.stock(item, reserve_rack, 100)
        factories.stock(item, pick_b, 3)
        factories.stock(item, pick_a, 2)
        assert reserve(warehouse, (item, 9)) == [[("A-01", 2), ("B-01", 3), ("R-01", 4)]]

    def test_an_empty_pick_face_is_passed_over(self, warehouse, pick_a, pick_b, item):
        factories.stock(item, pick_a, 4)
        factories.stock(item, pick_b, 10)
        assert reserve(warehouse, (item, 4)) == [[("A-01", 4)]]
        assert reserve(warehouse, (item, 6)) == [[("B-01", 6)]]

    def test_the_earliest_expiry_goes_first_before_pick_sequence(self, warehouse, pick_a, pick_b, item, lots):
        factories.stock(item, pick_a, 10, lot=lots["LATE"])
        factories.stock(item, pick_b, 10, lot=lots["EARLY"])
        assert reserve(warehouse, (item, 4)) == [[("B-01/EARLY", 4)]]
        assert reserve(warehouse, (item, 8)) == [[("B-01/EARLY", 6), ("A-01/LATE", 2)]]

    def test_quarantine_docks_and_inactive_locations_never_give_stock(self, warehouse, pick_a, item):
        quarantine = factories.LocationFactory(warehouse=warehouse, code="Q-01", kind=Location.Kind.QUARANTINE)
        closed = factories.LocationFactory(warehouse=warehouse, code="A-00", pick_sequence=1, is_active=False)
        factories.stock(item, quarantine, 50)
        factories.stock(item, closed, 50)
        factories.stock(item, pick_a, 3)
        assert reserve(warehouse, (item, 2)) == [[("A-01", 2)]]
        assert reserve(warehouse, (item, 5)) == [[("A-01", 1)]]  # short: the rest is not there to promise

    def test_the_same_walk_serves_one_line_and_several(self, warehouse, pick_a, pick_b, item, lots):
        other = factories.ItemFactory(sku="OTHER-1")
        factories.stock(item, pick_a, 10, lot=lots["LATE"])
        factories.stock(item, pick_b, 10, lot=lots["EARLY"])
        factories.stock(other, pick_a, 5)
        assert reserve(warehouse, (item, 4), (other, 1)) == [[("B-01/EARLY", 4)], [("A-01", 1)]]
        assert reserve(warehouse, (item, 4)) == [[("B-01/EARLY", 4)]]


def _free(session, pk: int) -> bool:
    return can_lock(session, "inventory_stocklevel", pk)


@pytest.mark.django_db(transaction=True)
def test_one_line_from_the_head_holds_only_its_row_and_a_split_holds_every_candidate(warehouse, pick_a, pick_b, item):
    first, second = factories.stock(item, pick_a, 5), factories.stock(item, pick_b, 5)
    other = other_session()
    try:
        with transaction.atomic():
            assert reserve(warehouse, (item, 3)) == [[("A-01", 3)]]
            assert (_free(other, first.pk), _free(other, second.pk)) == (False, True)
        with transaction.atomic():
            assert reserve(warehouse, (item, 4)) == [[("A-01", 2), ("B-01", 2)]]
            assert (_free(other, first.pk), _free(other, second.pk)) == (False, False)
        assert _free(other, first.pk) and _free(other, second.pk)
    finally:
        other.close()


def _wait_until(session: psycopg.Connection, pid: int, marker: str, timeout: float = 10) -> None:
    """Until backend `pid` waits on a lock while running a statement containing `marker`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = session.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock' AND position(%s in query) > 0",
            [pid, marker],
        ).fetchone()
        if row:
            return
        time.sleep(0.02)
    state = session.execute(
        "SELECT state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity WHERE pid = %s", [pid]
    ).fetchone()
    raise AssertionError(f"backend {pid} never waited in a statement with {marker!r}: {state}")


@pytest.mark.django_db(transaction=True)
def test_a_head_row_lost_to_another_reservation_is_let_go_before_the_walk_locks_in_id_order(
    warehouse, pick_a, pick_b, item
):
    """The head row (A-01) has a larger id than the next row (B-01). While this reservation waits for
    A-01, another takes all of it; a third session holds B-01 and then wants A-01. Had the failed
    re-check kept A-01 locked while the walk waited for B-01, the two would deadlock."""
    b_row = factories.stock(item, pick_b, 10)
    a_row = factories.stock(item, pick_a, 2)
    assert a_row.pk > b_row.pk
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    taker, holder, watcher = other_session(), other_session(), other_session()
    holder.execute("SET lock_timeout = '10s'")
    outcome: dict[str, object] = {}

    def contenders() -> None:
        try:
            _wait_until(watcher, pid, "head AS")  # this reservation waits for A-01
            taker.execute("COMMIT")  # ... which the taker has emptied meanwhile
            _wait_until(watcher, pid, "SELECT d.line_no")  # the walk now waits for B-01, which the holder has
            holder.execute("SELECT id FROM inventory_stocklevel WHERE id = %s FOR NO KEY UPDATE", [a_row.pk])
            holder.execute("COMMIT")
            outcome["holder"] = "got A-01"
        except Exception as error:  # reported below: the assertion names it
            outcome["holder"] = f"{type(error).__name__}: {error}"
            holder.execute("ROLLBACK")

    try:
        taker.execute("BEGIN")
        taker.execute("UPDATE inventory_stocklevel SET reserved = reserved + 2 WHERE id = %s", [a_row.pk])
        holder.execute("BEGIN")
        holder.execute("SELECT id FROM inventory_stocklevel WHERE id = %s FOR NO KEY UPDATE", [b_row.pk])
        helper = threading.Thread(target=contenders)
        helper.start()
        with transaction.atomic():
            allocated = reserve(warehouse, (item, 2))
        helper.join(timeout=30)
    finally:
        for session in (taker, holder, watcher):
            session.close()

    assert outcome == {"holder": "got A-01"}
    assert allocated == [[("B-01", 2)]]
