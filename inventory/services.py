"""Every change to stock, reservations, receipts and counts.

Concurrency rules (the only ones; every write here follows them):

* Locks are taken in one order — order rows, then reservation rows, then stock rows —
  and within a kind by primary key, so two transactions never wait on each other in a cycle.
* Stock rows are locked with ``FOR NO KEY UPDATE`` (never SKIP LOCKED): inserts of
  reservations and movements that reference them are not blocked.
* Every other row lock in every app is ``FOR NO KEY UPDATE`` too (``select_for_update(no_key=True)``),
  never plain ``FOR UPDATE``: Django's foreign keys are checked at COMMIT with ``FOR KEY SHARE`` on the
  parent row, which ``FOR UPDATE`` blocks. A transaction that inserts a row pointing at an order
  another transaction holds would then wait at commit, after taking its own locks, outside the order
  above — a deadlock under load (an order being allocated while a worker confirms picks).
* One stock row alone needs no lock taken beforehand: its conditional UPDATE is the lock (a
  single line reserved from the head of its walk). Several rows are locked first, by primary key.
* Quantities change by conditional UPDATE (``reserved = reserved + n WHERE available >= n``);
  the CHECK constraints on ``StockLevel`` are the last line of defence, and a violation
  becomes a ``DomainError``, never a 500.
* ``QuerySet.update`` skips django-simple-history: the movement ledger is the audit trail
  for quantities; reservations and documents keep their own history.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from inventory import events
from inventory.models import (
    CycleCount,
    Item,
    Location,
    Lot,
    Receipt,
    ReceiptLine,
    Reservation,
    StockLevel,
    StockMovement,
    VariancePolicy,
    Warehouse,
)
from inventory.selectors import stock_discrepancies
from portal.actors import Actor, stamp_history
from portal.domain import DomainError, InvalidInput, PermissionRefused, TransitionRefused, require_reason, transition
from portal.events import emit, emit_many


def _emit(name: str, **kwargs):
    """emit() from inside this module's own service transaction, which every error leaves: a failing
    subscriber rolls the whole service call back, so the event needs no savepoint of its own."""
    return emit(name, savepoint=False, **kwargs)


class InsufficientStock(DomainError):
    code = "insufficient_stock"


@dataclass(frozen=True)
class LineDemand:
    """What one order line asks of a warehouse."""

    order_line_id: int
    order_number: str
    item_id: int
    quantity: int


@dataclass
class LineAllocation:
    """What a line got: possibly split over several stock rows, possibly short."""

    order_line_id: int
    requested: int
    reservations: list[Reservation] = field(default_factory=list)

    @property
    def reserved(self) -> int:
        return sum(r.quantity for r in self.reservations)

    @property
    def shortfall(self) -> int:
        return self.requested - self.reserved


@dataclass(frozen=True)
class PickResult:
    picked: int
    shortfall: int
    quarantined: int
    count: CycleCount | None


# --- helpers -------------------------------------------------------------------------


def _allocation_key(row: StockLevel) -> tuple:
    """FEFO for lots (earliest expiry first), then the walk order, then the row id."""
    expiry = row.lot.expires_on if row.lot is not None and row.lot.expires_on else dt.date.max
    return (expiry, row.location.pick_sequence, row.location.code, row.pk)


def _apply_deltas(column: str, deltas: dict[int, int], *, guard: str) -> None:
    """Add deltas[row_id] to `column` of each stock row in one statement; every row must pass `guard`."""
    if not deltas:
        return
    ids = sorted(deltas)
    values = ", ".join(["(%s, %s)"] * len(ids))
    params: list[int] = []
    for row_id in ids:
        params.extend([row_id, deltas[row_id]])
    sql = (
        f"UPDATE inventory_stocklevel AS s SET {column} = s.{column} + v.delta, updated_at = now() "
        f"FROM (VALUES {values}) AS v(id, delta) WHERE s.id = v.id AND {guard}"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            updated = cursor.rowcount
    except IntegrityError as error:
        raise InsufficientStock(
            "The stock changed while this was being done; nothing was changed. Try again."
        ) from error
    if updated != len(ids):
        raise InsufficientStock("Not enough stock is available any more; nothing was changed. Refresh and try again.")


def _movement(
    level: StockLevel,
    kind: str,
    *,
    on_hand: int = 0,
    quarantined: int = 0,
    actor: Actor,
    reason: str,
    source_type: str = "",
    source_ref: str = "",
) -> StockMovement:
    return StockMovement(
        stock_level=level,
        kind=kind,
        on_hand_delta=on_hand,
        quarantined_delta=quarantined,
        actor=actor.label,
        user=actor.user if actor.kind == "user" else None,
        reason=reason,
        source_type=source_type,
        source_ref=source_ref,
    )


def _lock_stock(ids) -> dict[int, StockLevel]:
    rows = StockLevel.objects.filter(pk__in=ids).order_by("pk").select_for_update(no_key=True)
    return {row.pk: row for row in rows}


# --- reservations --------------------------------------------------------------------


# The reservations of a plan (line_no, id, order line, order number, item, stock row, quantity) and their history
# rows; the statement returns the plan. Shared by the statements below.
_WRITE_PLAN_SQL = """
inserted AS (
    INSERT INTO inventory_reservation (id, created_at, updated_at, stock_level_id, item_id, warehouse_id,
                                       order_line_id, order_number, quantity, picked_quantity, status,
                                       expires_at, closed_at)
    SELECT p.id, %(now)s::timestamptz, %(now)s::timestamptz, p.stock_level_id, p.item_id, %(warehouse_id)s::bigint, p.order_line_id,
           p.order_number, p.quantity, 0, 'reserved', NULL, NULL
    FROM plan p
    RETURNING *
),
recorded AS (
    INSERT INTO inventory_historicalreservation (id, created_at, updated_at, stock_level_id, item_id, warehouse_id,
                                                 order_line_id, order_number, quantity, picked_quantity, status,
                                                 expires_at, closed_at, history_date, history_type,
                                                 history_change_reason, history_user_id, history_actor, history_reason)
    SELECT i.id, i.created_at, i.updated_at, i.stock_level_id, i.item_id, i.warehouse_id, i.order_line_id,
           i.order_number, i.quantity, i.picked_quantity, i.status, i.expires_at, i.closed_at, %(now)s::timestamptz, '+',
           %(change_reason)s::text, %(user_id)s::integer, %(actor)s::text, %(reason)s::text
    FROM inserted i
)
SELECT p.line_no, p.id, p.stock_level_id, p.quantity FROM plan p ORDER BY p.id
"""

# The stock rows an item may be reserved from at a warehouse (warehouse_id), and the order they are used in: FEFO for
# lots, then pick sequence, location code and row id.
_CANDIDATES_SQL = """
    FROM inventory_stocklevel s
    JOIN inventory_location l ON l.id = s.location_id
    JOIN inventory_warehouse w ON w.id = l.warehouse_id
    LEFT JOIN inventory_lot lot ON lot.id = s.lot_id
    WHERE l.warehouse_id = %(warehouse_id)s::bigint AND l.kind IN ('pick', 'reserve') AND l.is_active AND w.is_active
"""
_WALK_ORDER_SQL = "expires_on NULLS LAST, pick_sequence, code, id"

RESERVE_LINES_SQL = f"""
WITH demand AS MATERIALIZED (
    SELECT d.line_no, d.order_line_id, d.order_number, d.item_id, d.quantity,
           SUM(d.quantity) OVER (PARTITION BY d.item_id ORDER BY d.line_no) - d.quantity AS need_start
    FROM ROWS FROM (jsonb_to_recordset(%(lines)s::jsonb) AS (order_line_id bigint, order_number text, item_id bigint, quantity integer))
         WITH ORDINALITY AS d(order_line_id, order_number, item_id, quantity, line_no)
),
candidate AS MATERIALIZED (
    SELECT s.id, s.item_id, GREATEST(s.on_hand - s.reserved - s.quarantined, 0) AS available,
           lot.expires_on, l.pick_sequence, l.code
    {_CANDIDATES_SQL}
      AND s.item_id = ANY(ARRAY(SELECT item_id FROM demand))
    ORDER BY s.id
    FOR NO KEY UPDATE OF s
),
supply AS (
    SELECT c.id, c.item_id, c.available, SUM(c.available) OVER walk - c.available AS supply_start,
           ROW_NUMBER() OVER walk AS walk_rank
    FROM candidate c
    WINDOW walk AS (PARTITION BY c.item_id ORDER BY {_WALK_ORDER_SQL})
),
plan AS MATERIALIZED (
    SELECT nextval('inventory_reservation_id_seq'::regclass) AS id, split.*
    FROM (
        SELECT d.line_no, d.order_line_id, d.order_number, d.item_id, s.id AS stock_level_id,
               LEAST(s.supply_start + s.available, d.need_start + d.quantity)
                   - GREATEST(s.supply_start, d.need_start) AS quantity
        FROM demand d JOIN supply s ON s.item_id = d.item_id
        WHERE LEAST(s.supply_start + s.available, d.need_start + d.quantity) > GREATEST(s.supply_start, d.need_start)
        ORDER BY d.line_no, s.walk_rank
    ) split
),
raised AS (
    UPDATE inventory_stocklevel s SET reserved = s.reserved + t.quantity, updated_at = %(now)s::timestamptz
    FROM (SELECT stock_level_id, SUM(quantity) AS quantity FROM plan GROUP BY stock_level_id) t
    WHERE s.id = t.stock_level_id
),
{_WRITE_PLAN_SQL}"""

# One line whose whole quantity the first stock row in walk order can give: a conditional UPDATE of that one
# row, read without a lock, re-checked by the UPDATE on the row as it is now. No row back (the row had too
# little, or another reservation took it first): nothing changed, and RESERVE_LINES_SQL does the line.
RESERVE_ONE_FROM_HEAD_SQL = f"""
WITH demand AS MATERIALIZED (
    SELECT d.order_line_id, d.order_number, d.item_id, d.quantity
    FROM jsonb_to_record(%(lines)s::jsonb -> 0) AS d(order_line_id bigint, order_number text, item_id bigint, quantity integer)
),
head AS MATERIALIZED (
    SELECT s.id, lot.expires_on, l.pick_sequence, l.code
    {_CANDIDATES_SQL}
      AND s.item_id = (SELECT item_id FROM demand) AND s.on_hand - s.reserved - s.quarantined > 0
    ORDER BY {_WALK_ORDER_SQL}
    LIMIT 1
),
raised AS (
    UPDATE inventory_stocklevel s SET reserved = s.reserved + d.quantity, updated_at = %(now)s::timestamptz
    FROM head h, demand d
    WHERE s.id = h.id AND s.on_hand - s.reserved - s.quarantined >= d.quantity
    RETURNING s.id
),
plan AS MATERIALIZED (
    SELECT nextval('inventory_reservation_id_seq'::regclass) AS id, 1 AS line_no, d.order_line_id, d.order_number,
           d.item_id, r.id AS stock_level_id, d.quantity
    FROM raised r, demand d
),
{_WRITE_PLAN_SQL}"""


class _PreparedCursor(psycopg.Cursor):
    """A server-side binding cursor whose statements psycopg prepares at once, not after a few runs.

    The reservation statement is the hot path of allocation: prepared, it is planned once
    per connection and its lines travel as one bound parameter instead of SQL literals.
    psycopg keeps the prepared statements per connection and forgets them when a
    transaction that prepared one is rolled back, so nothing here tracks that.
    """

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


def _execute_reserve_lines(params: dict, db, *, single_line: bool) -> list[tuple]:
    """Reserve on the current connection: a single line from the head of its walk if it can, else RESERVE_LINES_SQL.

    In the caller's transaction both run in one savepoint, which is rolled back between them.
    That is what keeps the lock order: when the head row was changed by another transaction
    while this one waited for it, the UPDATE's re-check fails but the row stays locked, and
    RESERVE_LINES_SQL would then lock rows with smaller ids after it. Outside a transaction
    the head statement is its own and its end lets the row go.
    """
    savepoint = transaction.savepoint(using=db.alias) if db.in_atomic_block else None
    try:
        rows = _execute_prepared(RESERVE_ONE_FROM_HEAD_SQL, params, db) if single_line else []
        if not rows:
            if single_line and savepoint is not None:
                transaction.savepoint_rollback(savepoint, using=db.alias)
            rows = _execute_prepared(RESERVE_LINES_SQL, params, db)
    except BaseException:
        if savepoint is not None:
            transaction.savepoint_rollback(savepoint, using=db.alias)
        raise
    if savepoint is not None:
        transaction.savepoint_commit(savepoint, using=db.alias)
    return rows


def _execute_prepared(sql: str, params: dict, db) -> list[tuple]:
    """Run a reservation statement, prepared once per connection (through Django's cursor wrapper: logged, counted)."""
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django turns psycopg's automatic preparation off (threshold None), which also ignores prepare=True.
        # A threshold no query reaches keeps it off for every other query and lets this one be prepared.
        raw.prepare_threshold = 2**31 - 1
    with db._prepare_cursor(_PreparedCursor(raw)) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def reservation_reserve_lines(
    *, warehouse: Warehouse, demands: list[LineDemand], actor: Actor, reason: str
) -> list[LineAllocation]:
    """Reserve stock for order lines at one warehouse; partial results are reported, never oversold.

    The lines go in one statement (``RESERVE_LINES_SQL``, prepared once per connection,
    parameters bound): it locks every candidate stock row of the requested items in
    primary-key order (``FOR NO KEY UPDATE``, never SKIP LOCKED), splits each line over
    those rows in allocation order (FEFO for lots, then pick sequence, location code and
    row id) from the figures it holds locked, raises ``reserved`` and inserts the
    reservations with their history rows. Lines of one item are served in the order given.
    A single line that the first row in allocation order can fill whole is first tried as
    one conditional UPDATE of that row alone (``RESERVE_ONE_FROM_HEAD_SQL``), which locks
    nothing else; when that row has too little, the statement above does the line.

    The CHECK constraints stay the last line of defence: a violation becomes
    ``InsufficientStock`` and nothing is changed. Outside a transaction each statement is
    its own transaction (one round trip); inside one they run in a savepoint so a refusal
    leaves the caller's transaction usable.
    """
    for demand in demands:
        if demand.quantity <= 0:
            raise InvalidInput("Quantities must be positive.", fields={"quantity": ["Must be at least 1."]})
    allocations = [LineAllocation(order_line_id=d.order_line_id, requested=d.quantity) for d in demands]
    if not demands:
        return allocations
    now = timezone.now()
    # The lines travel as one JSON document (one cheap parameter rather than four typed arrays).
    params = {
        "lines": json.dumps(
            [
                {
                    "order_line_id": d.order_line_id,
                    "order_number": d.order_number,
                    "item_id": d.item_id,
                    "quantity": d.quantity,
                }
                for d in demands
            ]
        ),
        "warehouse_id": warehouse.pk,
        "now": now,
        "actor": actor.label,
        "user_id": actor.user_id if actor.kind == "user" else None,
        "reason": reason,
        "change_reason": reason[:100],
    }
    db = connections[DEFAULT_DB_ALIAS]  # looked up once: the proxy costs a context-local lookup per use
    try:
        rows = _execute_reserve_lines(params, db, single_line=len(demands) == 1)
    except IntegrityError as error:
        raise InsufficientStock(
            "The stock changed while this was being done; nothing was changed. Try again."
        ) from error
    for line_no, reservation_id, stock_level_id, quantity in rows:
        demand = demands[line_no - 1]
        # Exactly the row the statement inserted, built as if loaded from the database (positional: the fast path).
        reservation = Reservation.from_db(
            db.alias,
            None,
            (
                reservation_id,
                now,
                now,
                stock_level_id,
                demand.item_id,
                warehouse.pk,
                demand.order_line_id,
                demand.order_number,
                quantity,
                0,
                Reservation.Status.RESERVED,
                None,
                None,
            ),
        )
        allocations[line_no - 1].reservations.append(reservation)
    return allocations


def reservation_release(*, reservations: list[Reservation] | list[int], actor: Actor, reason: str) -> int:
    """Give reserved stock back; returns the quantity released. Already-closed reservations are skipped."""
    require_reason(reason)
    ids = sorted(int(r) if isinstance(r, int) else r.pk for r in reservations)
    with transaction.atomic():
        locked = list(
            Reservation.objects.filter(pk__in=ids, status=Reservation.Status.RESERVED)
            .order_by("pk")
            .select_for_update(no_key=True)
        )
        decrements: dict[int, int] = defaultdict(int)
        for reservation in locked:
            decrements[reservation.stock_level_id] -= reservation.quantity
        _lock_stock(decrements.keys())
        _apply_deltas("reserved", decrements, guard="s.reserved + v.delta >= 0")
        for reservation in locked:
            transition(reservation, "release", actor=actor, reason=reason, update_fields=["closed_at"])
    return -sum(decrements.values())


def reservation_expire_due(*, now, actor: Actor) -> int:
    """Expire reservations past their expiry time (a beat job); returns how many."""
    ids = list(
        Reservation.objects.filter(status=Reservation.Status.RESERVED, expires_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
    count = 0
    for reservation_id in ids:
        with transaction.atomic():
            reservation = (
                Reservation.objects.select_for_update(no_key=True)
                .filter(pk=reservation_id, status=Reservation.Status.RESERVED)
                .first()
            )
            if reservation is None:
                continue
            _lock_stock([reservation.stock_level_id])
            _apply_deltas(
                "reserved", {reservation.stock_level_id: -reservation.quantity}, guard="s.reserved + v.delta >= 0"
            )
            transition(reservation, "expire", actor=actor, reason="Reservation expired", update_fields=["closed_at"])
            count += 1
    return count


def reservation_pick(
    *, reservation: Reservation, picked_quantity: int, actor: Actor, reason: str, source_ref: str = ""
) -> PickResult:
    """Consume a reservation: on hand falls by what was picked; a shortfall is quarantined and counted.

    What the picker did not find is released from the reservation and, as far as the
    row still shows it, put in quarantine so no other order is promised it until a
    cycle count (opened here) settles the truth.
    """
    if picked_quantity < 0:
        raise InvalidInput("Picked quantity cannot be negative.", fields={"picked_quantity": ["Must be 0 or more."]})
    with transaction.atomic():
        locked = Reservation.objects.select_for_update(no_key=True).get(pk=reservation.pk)
        if locked.status != Reservation.Status.RESERVED:
            raise TransitionRefused(f"Reservation {locked.pk} is {locked.status}; only reserved stock can be picked.")
        if picked_quantity > locked.quantity:
            raise InvalidInput(
                f"Picked {picked_quantity} but only {locked.quantity} were reserved.",
                fields={"picked_quantity": [f"At most {locked.quantity}."]},
            )
        level = _lock_stock([locked.stock_level_id])[locked.stock_level_id]
        shortfall = locked.quantity - picked_quantity
        StockLevel.objects.filter(pk=level.pk).update(
            on_hand=F("on_hand") - picked_quantity, reserved=F("reserved") - locked.quantity
        )
        movements = []
        if picked_quantity:
            movements.append(
                _movement(
                    level,
                    StockMovement.Kind.PICK,
                    on_hand=-picked_quantity,
                    actor=actor,
                    reason=reason,
                    source_type="reservation",
                    source_ref=source_ref or str(locked.pk),
                )
            )
        quarantined = 0
        count = None
        if shortfall:
            level.refresh_from_db(fields=["on_hand", "reserved", "quarantined"])
            quarantined = max(0, min(shortfall, level.available))
            if quarantined:
                StockLevel.objects.filter(pk=level.pk).update(quarantined=F("quarantined") + quarantined)
                movements.append(
                    _movement(
                        level,
                        StockMovement.Kind.QUARANTINE,
                        quarantined=quarantined,
                        actor=actor,
                        reason=f"Short pick: {shortfall} not found; held until counted",
                        source_type="reservation",
                        source_ref=str(locked.pk),
                    )
                )
            count = count_request(
                stock_level=level, actor=actor, reason=f"Short pick of {shortfall} on reservation {locked.pk}"
            )
        StockMovement.objects.bulk_create(movements)
        transition(
            locked,
            "pick",
            actor=actor,
            reason=reason,
            update_fields=["picked_quantity", "closed_at"],
            picked=picked_quantity,
        )
    return PickResult(picked=picked_quantity, shortfall=shortfall, quarantined=quarantined, count=count)


# --- stock on hand -------------------------------------------------------------------


def stock_level_for(*, item: Item, location: Location, lot: Lot | None = None) -> StockLevel:
    """The stock row for item × location × lot, created empty if missing (safe under races)."""
    if item.lot_tracked and lot is None:
        raise InvalidInput(f"{item.sku} is lot-tracked: give the lot.", fields={"lot": ["Required for this item."]})
    StockLevel.objects.bulk_create([StockLevel(item=item, location=location, lot=lot)], ignore_conflicts=True)
    return StockLevel.objects.get(item=item, location=location, lot=lot)


@dataclass(frozen=True)
class StockArrival:
    """Units that arrived at a location: one line of ``stock_receive_many``."""

    item: Item
    location: Location
    quantity: int
    lot: Lot | None = None
    reason: str = ""  # this arrival's own reason, when it differs from the batch's
    source_ref: str = ""

    def check(self) -> None:
        """Refuse what no stock row may take: a quantity below 1, a lot-tracked item without its lot."""
        if self.quantity <= 0:
            raise InvalidInput("Received quantity must be positive.", fields={"quantity": ["Must be at least 1."]})
        if self.item.lot_tracked and self.lot is None:
            raise InvalidInput(
                f"{self.item.sku} is lot-tracked: give the lot.", fields={"lot": ["Required for this item."]}
            )


def stock_receive_many(
    *, arrivals: list[StockArrival], actor: Actor, reason: str, source_type: str = ""
) -> list[StockMovement]:
    """Add several arrivals to stock at once: rows locked in primary-key order, one update, one ledger insert.

    All or nothing, like a single receipt. Arrivals at the same stock row are added in the
    order given (one movement each). Returns the movements in the order of `arrivals`.
    """
    require_reason(reason)
    for arrival in arrivals:
        arrival.check()
    if not arrivals:
        return []
    with transaction.atomic():
        levels = _lock_stock_levels_for({_arrival_key(arrival) for arrival in arrivals})
        deltas: dict[int, int] = defaultdict(int)
        movements, announced = [], []
        for arrival in arrivals:
            level = levels[_arrival_key(arrival)]
            deltas[level.pk] += arrival.quantity
            why = arrival.reason or reason
            movements.append(
                _movement(
                    level,
                    StockMovement.Kind.RECEIPT,
                    on_hand=arrival.quantity,
                    actor=actor,
                    reason=why,
                    source_type=source_type,
                    source_ref=arrival.source_ref,
                )
            )
            announced.append((level, _received_payload(arrival.item, arrival.location, arrival.quantity), why))
        _apply_deltas("on_hand", deltas, guard="TRUE")
        StockMovement.objects.bulk_create(movements)
        emit_many(
            events.STOCK_RECEIVED,
            items=[(level, payload) for level, payload, _why in announced],
            reasons=[why for _level, _payload, why in announced],
            actor=actor,
            reason=reason,
            savepoint=False,
        )
    return movements


def stock_receive(
    *,
    item: Item,
    location: Location,
    quantity: int,
    actor: Actor,
    reason: str,
    lot: Lot | None = None,
    source_type: str = "",
    source_ref: str = "",
) -> StockMovement:
    """Add received units to a location through the ledger."""
    arrival = StockArrival(item=item, location=location, quantity=quantity, lot=lot, source_ref=source_ref)
    return stock_receive_many(arrivals=[arrival], actor=actor, reason=reason, source_type=source_type)[0]


def _arrival_key(arrival: StockArrival) -> tuple[int, int, int | None]:
    return arrival.item.pk, arrival.location.pk, arrival.lot.pk if arrival.lot else None


def _lock_stock_levels_for(keys: set[tuple[int, int, int | None]]) -> dict[tuple, StockLevel]:
    """The stock rows for (item id, location id, lot id) keys, locked in primary-key order; missing ones created.

    The rows usually exist: one locking read. Missing rows are created empty, then locked after
    the others (only a first receipt at a location creates one).
    """
    levels = _locked_levels(keys)
    missing = keys - levels.keys()
    if missing:
        StockLevel.objects.bulk_create(
            [
                StockLevel(item_id=item, location_id=location, lot_id=lot)
                for item, location, lot in sorted(missing, key=str)
            ],
            ignore_conflicts=True,
        )
        levels.update(_locked_levels(missing))
    return levels


def _locked_levels(keys) -> dict[tuple, StockLevel]:
    wanted = Q()
    for item, location, lot in keys:
        wanted |= Q(item_id=item, location_id=location, lot_id=lot)
    rows = StockLevel.objects.filter(wanted).order_by("pk").select_for_update(no_key=True)
    return {(row.item_id, row.location_id, row.lot_id): row for row in rows}


def _received_payload(item: Item, location: Location, quantity: int) -> dict:
    return {
        "sku": item.sku,
        "item_id": item.pk,
        "warehouse": location.warehouse.code,
        "warehouse_id": location.warehouse_id,
        "location": location.code,
        "quantity": quantity,
    }


def stock_adjust(
    *,
    stock_level: StockLevel,
    delta: int,
    actor: Actor,
    reason: str,
    kind: str = StockMovement.Kind.ADJUSTMENT,
    source_type: str = "",
    source_ref: str = "",
) -> StockMovement:
    """Correct on hand by `delta`; refused if it would leave less than is reserved and quarantined."""
    require_reason(reason)
    if delta == 0:
        raise InvalidInput("An adjustment must change the quantity.", fields={"delta": ["Must not be 0."]})
    with transaction.atomic():
        level = _lock_stock([stock_level.pk])[stock_level.pk]
        if level.on_hand + delta < level.reserved + level.quarantined:
            raise InsufficientStock(
                f"On hand would fall to {level.on_hand + delta} while {level.reserved} are reserved and "
                f"{level.quarantined} quarantined. Release reservations or quarantine first."
            )
        _apply_deltas("on_hand", {level.pk: delta}, guard="s.on_hand + v.delta >= s.reserved + s.quarantined")
        movement = _movement(
            level, kind, on_hand=delta, actor=actor, reason=reason, source_type=source_type, source_ref=source_ref
        )
        movement.save()
        location = level.location
        _emit(
            events.STOCK_ADJUSTED,
            subject=level,
            actor=actor,
            reason=reason,
            payload={
                "sku": level.item.sku,
                "item_id": level.item_id,
                "warehouse": location.warehouse.code,
                "warehouse_id": location.warehouse_id,
                "location": location.code,
                "on_hand_delta": delta,
                "kind": kind,
            },
        )
    return movement


def stock_quarantine(*, stock_level: StockLevel, quantity: int, actor: Actor, reason: str) -> StockMovement:
    """Hold available units (damaged, suspect) so nothing is promised from them."""
    require_reason(reason)
    if quantity <= 0:
        raise InvalidInput("Quantity must be positive.", fields={"quantity": ["Must be at least 1."]})
    with transaction.atomic():
        level = _lock_stock([stock_level.pk])[stock_level.pk]
        _apply_deltas("quarantined", {level.pk: quantity}, guard="s.on_hand - s.reserved - s.quarantined >= v.delta")
        movement = _movement(level, StockMovement.Kind.QUARANTINE, quarantined=quantity, actor=actor, reason=reason)
        movement.save()
    return movement


def stock_release_quarantine(*, stock_level: StockLevel, quantity: int, actor: Actor, reason: str) -> StockMovement:
    """Make quarantined units available again."""
    require_reason(reason)
    if quantity <= 0:
        raise InvalidInput("Quantity must be positive.", fields={"quantity": ["Must be at least 1."]})
    with transaction.atomic():
        level = _lock_stock([stock_level.pk])[stock_level.pk]
        _apply_deltas("quarantined", {level.pk: -quantity}, guard="s.quarantined + v.delta >= 0")
        movement = _movement(level, StockMovement.Kind.RELEASE, quarantined=-quantity, actor=actor, reason=reason)
        movement.save()
    return movement


def stock_transfer(
    *,
    stock_level: StockLevel,
    to_location: Location,
    quantity: int,
    actor: Actor,
    reason: str,
    kind: str = StockMovement.Kind.TRANSFER,
) -> tuple[StockMovement, StockMovement]:
    """Move available units to another location (putaway, replenishment, move): two ledger lines."""
    require_reason(reason)
    if quantity <= 0:
        raise InvalidInput("Quantity must be positive.", fields={"quantity": ["Must be at least 1."]})
    if to_location.warehouse_id != stock_level.location.warehouse_id:
        raise InvalidInput("Transfers stay inside one warehouse.", fields={"to_location": ["Same warehouse only."]})
    with transaction.atomic():
        target = stock_level_for(item=stock_level.item, location=to_location, lot=stock_level.lot)
        if target.pk == stock_level.pk:
            raise InvalidInput("Source and target are the same.", fields={"to_location": ["Pick another location."]})
        _lock_stock([stock_level.pk, target.pk])
        _apply_deltas(
            "on_hand", {stock_level.pk: -quantity}, guard="s.on_hand - s.reserved - s.quarantined + v.delta >= 0"
        )
        _apply_deltas("on_hand", {target.pk: quantity}, guard="true")
        out = _movement(
            stock_level,
            kind,
            on_hand=-quantity,
            actor=actor,
            reason=reason,
            source_type="transfer",
            source_ref=str(target.pk),
        )
        into = _movement(
            target,
            kind,
            on_hand=quantity,
            actor=actor,
            reason=reason,
            source_type="transfer",
            source_ref=str(stock_level.pk),
        )
        StockMovement.objects.bulk_create([out, into])
    return out, into


# --- receipts ------------------------------------------------------------------------


def variance_policy_for(warehouse: Warehouse) -> VariancePolicy:
    policy = (
        VariancePolicy.objects.filter(warehouse=warehouse).first()
        or VariancePolicy.objects.filter(warehouse__isnull=True).first()
    )
    return policy or VariancePolicy()


def receipt_create(
    *,
    number: str,
    warehouse: Warehouse,
    supplier: str,
    lines: list[dict],
    actor: Actor,
    reason: str,
    document_kind: str = Receipt.DocumentKind.ASN,
    purchase_order: str = "",
    dock: Location | None = None,
) -> Receipt:
    """Record an expected inbound delivery; lines are {item, expected_quantity, lot?}.

    Publishes ``inventory.receipt_expected`` with the lines, so the warehouse hears of it.
    """
    if not lines:
        raise InvalidInput("A receipt needs at least one line.", fields={"lines": ["Add a line."]})
    with transaction.atomic():
        receipt = Receipt(
            number=number,
            warehouse=warehouse,
            supplier=supplier,
            document_kind=document_kind,
            purchase_order=purchase_order,
            dock=dock,
        )
        stamp_history(receipt, actor=actor, reason=reason)
        receipt.save()
        receipt_lines = ReceiptLine.objects.bulk_create(
            [
                ReceiptLine(
                    receipt=receipt,
                    line_no=index,
                    item=line["item"],
                    lot=line.get("lot"),
                    expected_quantity=line["expected_quantity"],
                )
                for index, line in enumerate(lines, start=1)
            ]
        )
        _emit(
            events.RECEIPT_EXPECTED,
            subject=receipt,
            actor=actor,
            reason=reason,
            payload={
                "receipt": receipt.number,
                "receipt_id": receipt.pk,
                "warehouse": warehouse.code,
                "supplier": supplier,
                "purchase_order": purchase_order,
                "kind": document_kind,
                "dock": dock.code if dock else "",
                "lines": [
                    {
                        "line_no": line.line_no,
                        "sku": line.item.sku,
                        "expected_quantity": line.expected_quantity,
                        "lot": line.lot.code if line.lot else "",
                    }
                    for line in receipt_lines
                ],
            },
        )
    return receipt


def receipt_receive_line(
    *, line: ReceiptLine, quantity: int, location: Location, actor: Actor, reason: str = "Received"
) -> ReceiptLine:
    """Book received units of one receipt line into a location."""
    with transaction.atomic():
        receipt = Receipt.objects.select_for_update(no_key=True).get(pk=line.receipt_id)
        if receipt.status not in (Receipt.Status.EXPECTED, Receipt.Status.RECEIVING):
            raise TransitionRefused(
                f"Receipt {receipt.number} is {receipt.status}; nothing more can be received on it."
            )
        if receipt.status == Receipt.Status.EXPECTED:
            transition(receipt, "start_receiving", actor=actor, reason=reason)
        line = ReceiptLine.objects.select_for_update(no_key=True).get(pk=line.pk)
        stock_receive(
            item=line.item,
            location=location,
            quantity=quantity,
            lot=line.lot,
            actor=actor,
            reason=reason,
            source_type="receipt",
            source_ref=receipt.number,
        )
        ReceiptLine.objects.filter(pk=line.pk).update(received_quantity=F("received_quantity") + quantity)
        line.refresh_from_db()
    return line


def receipt_close(*, receipt: Receipt, actor: Actor, reason: str) -> list[ReceiptLine]:
    """Close a receipt; lines whose variance is beyond policy raise a receiving-variance event each."""
    require_reason(reason)
    with transaction.atomic():
        receipt = Receipt.objects.select_for_update(no_key=True).get(pk=receipt.pk)
        transition(receipt, "close", actor=actor, reason=reason, update_fields=["closed_at"])
        policy = variance_policy_for(receipt.warehouse)
        flagged = []
        for line in receipt.lines.select_related("item"):
            if line.variance and policy.exceeds(
                expected=line.expected_quantity, actual=line.received_quantity, kind="receiving"
            ):
                flagged.append(line)
                _emit(
                    events.RECEIVING_VARIANCE,
                    subject=receipt,
                    actor=actor,
                    reason=reason,
                    payload={
                        "receipt": receipt.number,
                        "receipt_id": receipt.pk,
                        "line_no": line.line_no,
                        "line_id": line.pk,
                        "sku": line.item.sku,
                        "supplier": receipt.supplier,
                        "warehouse": receipt.warehouse.code,
                        "warehouse_id": receipt.warehouse_id,
                        "expected": line.expected_quantity,
                        "received": line.received_quantity,
                        "variance": line.variance,
                        "value": str(abs(line.variance) * line.item.unit_value),
                    },
                )
        if flagged and not receipt.invoice_on_hold:
            Receipt.objects.filter(pk=receipt.pk).update(invoice_on_hold=True)
    return flagged


def receipt_cancel(*, receipt: Receipt, actor: Actor, reason: str) -> Receipt:
    """Cancel an expected delivery that will not come; refused once receiving has started."""
    require_reason(reason)
    with transaction.atomic():
        receipt = Receipt.objects.select_for_update(no_key=True).get(pk=receipt.pk)
        transition(receipt, "cancel", actor=actor, reason=reason, update_fields=["closed_at"])
    return receipt


def receipt_accept_variance(*, receipt: Receipt, actor: Actor, reason: str) -> Receipt:
    """Accept what was received as final: the supplier invoice may be paid for the received quantities."""
    require_reason(reason)
    with transaction.atomic():
        receipt = Receipt.objects.select_for_update(no_key=True).get(pk=receipt.pk)
        receipt.lines.filter(variance_accepted=False).update(variance_accepted=True)
        receipt.invoice_on_hold = False
        stamp_history(receipt, actor=actor, reason=reason)
        receipt.save(update_fields=["invoice_on_hold", "updated_at"])
    return receipt


def receipt_dispute(*, receipt: Receipt, actor: Actor, reason: str) -> Receipt:
    """Dispute the delivery with the supplier; the supplier invoice stays on hold."""
    require_reason(reason)
    with transaction.atomic():
        receipt = Receipt.objects.select_for_update(no_key=True).get(pk=receipt.pk)
        receipt.invoice_on_hold = True
        stamp_history(receipt, actor=actor, reason=reason)
        receipt.save(update_fields=["invoice_on_hold", "updated_at"])
    return receipt


# --- cycle counts --------------------------------------------------------------------


def count_request(*, stock_level: StockLevel, actor: Actor, reason: str) -> CycleCount:
    """Open a cycle count for a stock row, or return the one already open.

    Publishes ``inventory.count_requested``, so the warehouse sends someone to count.
    """
    with transaction.atomic():
        existing = CycleCount.objects.filter(stock_level=stock_level, status=CycleCount.Status.OPEN).first()
        if existing:
            return existing
        count = CycleCount(stock_level=stock_level, requested_reason=reason)
        stamp_history(count, actor=actor, reason=reason)
        count.save()
        level = StockLevel.objects.select_related("item", "location__warehouse", "lot").get(pk=stock_level.pk)
        _emit(
            events.COUNT_REQUESTED,
            subject=count,
            actor=actor,
            reason=reason,
            payload={
                "count_id": count.pk,
                "sku": level.item.sku,
                "warehouse": level.location.warehouse.code,
                "location": level.location.code,
                "lot": level.lot.code if level.lot else "",
                "reason": reason,
            },
        )
    return count


def count_record(*, count: CycleCount, counted_quantity: int, actor: Actor, reason: str = "Counted") -> CycleCount:
    """Record what the counter found. Within tolerance it is applied at once; beyond it, an event asks for approval."""
    if counted_quantity < 0:
        raise InvalidInput("A count cannot be negative.", fields={"counted_quantity": ["Must be 0 or more."]})
    with transaction.atomic():
        count = CycleCount.objects.select_for_update(no_key=True).get(pk=count.pk)
        level = _lock_stock([count.stock_level_id])[count.stock_level_id]
        transition(
            count,
            "record",
            actor=actor,
            reason=reason,
            update_fields=["expected_quantity", "counted_quantity", "counted_by", "counted_by_actor", "counted_at"],
            expected=level.on_hand,
            counted=counted_quantity,
            user=actor.user,
            actor_label=actor.label,
        )
        policy = variance_policy_for(level.location.warehouse)
        if not count.variance:
            transition(
                count,
                "approve",
                actor=Actor.policy("count-tolerance"),
                reason="No difference",
                update_fields=["decided_by_actor", "decided_at"],
                actor_label="policy:count-tolerance",
            )
            _settle_count_quarantine(count, level, actor=Actor.policy("count-tolerance"))
        elif not policy.exceeds(expected=level.on_hand, actual=counted_quantity, kind="count"):
            _apply_count(count, level, approver=Actor.policy("count-tolerance"), reason="Within count tolerance")
        else:
            item = level.item
            _emit(
                events.COUNT_VARIANCE,
                subject=count,
                actor=actor,
                reason=reason,
                payload={
                    "count_id": count.pk,
                    "sku": item.sku,
                    "item_id": item.pk,
                    "location": level.location.code,
                    "warehouse": level.location.warehouse.code,
                    "warehouse_id": level.location.warehouse_id,
                    "expected": count.expected_quantity,
                    "counted": counted_quantity,
                    "variance": count.variance,
                    "value": str(abs(count.variance) * item.unit_value),
                    "counted_by": actor.label,
                },
            )
    return count


def _settle_count_quarantine(count: CycleCount, level: StockLevel, *, actor: Actor) -> None:
    """A count settles the truth of a row: stock held for a short pick is released."""
    level.refresh_from_db(fields=["on_hand", "reserved", "quarantined"])
    if level.quarantined:
        held = StockMovement.objects.filter(
            stock_level=level, kind=StockMovement.Kind.QUARANTINE, source_type="reservation"
        )
        if held.exists():
            release = level.quarantined
            StockLevel.objects.filter(pk=level.pk).update(quarantined=F("quarantined") - release)
            _movement(
                level,
                StockMovement.Kind.RELEASE,
                quarantined=-release,
                actor=actor,
                reason=f"Count {count.pk} settled the row",
                source_type="count",
                source_ref=str(count.pk),
            ).save()


def _apply_count(count: CycleCount, level: StockLevel, *, approver: Actor, reason: str) -> None:
    delta = count.variance or 0
    level.refresh_from_db(fields=["on_hand", "reserved", "quarantined"])
    release = min(level.quarantined, -delta) if delta < 0 else 0
    if level.on_hand + delta < level.reserved + level.quarantined - release:
        raise InsufficientStock(
            f"The count leaves {level.on_hand + delta} on hand but {level.reserved} are reserved. "
            "Release or reallocate those reservations first."
        )
    if delta:
        StockLevel.objects.filter(pk=level.pk).update(
            on_hand=F("on_hand") + delta, quarantined=F("quarantined") - release
        )
        _movement(
            level,
            StockMovement.Kind.COUNT_CORRECTION,
            on_hand=delta,
            quarantined=-release,
            actor=approver,
            reason=reason,
            source_type="count",
            source_ref=str(count.pk),
        ).save()
    transition(
        count,
        "approve",
        actor=approver,
        reason=reason,
        update_fields=["decided_by_actor", "decided_at"],
        actor_label=approver.label,
    )
    _settle_count_quarantine(count, level, actor=approver)


def count_approve(*, count: CycleCount, actor: Actor, reason: str) -> CycleCount:
    """Apply a counted variance to on hand. The person who counted may not approve their own count."""
    require_reason(reason)
    with transaction.atomic():
        count = CycleCount.objects.select_for_update(no_key=True).get(pk=count.pk)
        if count.counted_by_actor and count.counted_by_actor == actor.label:
            raise PermissionRefused(
                "You counted this location; another person must approve the adjustment.", code="own_count"
            )
        if count.status != CycleCount.Status.COUNTED:
            raise TransitionRefused(f"Count {count.pk} is {count.status}; only a recorded count can be approved.")
        level = _lock_stock([count.stock_level_id])[count.stock_level_id]
        _apply_count(count, level, approver=actor, reason=reason)
    return count


def count_reject(*, count: CycleCount, actor: Actor, reason: str) -> CycleCount:
    """Discard a count (a recount will be requested); on hand is unchanged."""
    require_reason(reason)
    with transaction.atomic():
        count = CycleCount.objects.select_for_update(no_key=True).get(pk=count.pk)
        transition(
            count,
            "reject",
            actor=actor,
            reason=reason,
            update_fields=["decided_by_actor", "decided_at"],
            actor_label=actor.label,
        )
    return count


# --- reconciliation ------------------------------------------------------------------


@dataclass(frozen=True)
class StockRepair:
    """What reconciling one stock row did (or why it could not)."""

    stock_level_id: int
    before: dict
    after: dict
    repaired: bool
    note: str


def stock_reconcile(*, stock_level_ids: list[int], actor: Actor, reason: str) -> list[StockRepair]:
    """Set drifted stock rows back to their sources of truth: on hand and quarantined to the ledger, reserved to the
    active reservations.

    The rows are locked (primary-key order) and re-checked under the lock, so a row that
    was only caught mid-change is left alone. A row whose true figures would break the
    stock constraints (more reserved and quarantined than the ledger has on hand) is not
    touched: that needs a person (a count, or releasing reservations). Every repair is
    recorded as an ``inventory.stock_reconciled`` event with the figures before and after.
    """
    require_reason(reason)
    repairs: list[StockRepair] = []
    with transaction.atomic():
        locked = _lock_stock(sorted(set(stock_level_ids)))
        for row in stock_discrepancies(stock_level_ids=list(locked)):
            level = locked[row["id"]]
            before = {"on_hand": row["on_hand"], "reserved": row["reserved"], "quarantined": row["quarantined"]}
            after = {
                "on_hand": row["ledger_on_hand"],
                "reserved": row["reservations_reserved"],
                "quarantined": row["ledger_quarantined"],
            }
            if min(after.values()) < 0 or after["reserved"] + after["quarantined"] > after["on_hand"]:
                repairs.append(
                    StockRepair(
                        level.pk,
                        before,
                        after,
                        repaired=False,
                        note="The ledger and the reservations disagree with each other (more promised than on hand): "
                        "count the location or release reservations; nothing was changed.",
                    )
                )
                continue
            if before == after:
                continue
            StockLevel.objects.filter(pk=level.pk).update(**after, updated_at=timezone.now())
            _emit(
                events.STOCK_RECONCILED,
                subject=level,
                actor=actor,
                reason=reason,
                payload={"stock_level_id": level.pk, "before": before, "after": after},
            )
            repairs.append(
                StockRepair(level.pk, before, after, repaired=True, note="Set to the ledger and reservations")
            )
    return repairs
