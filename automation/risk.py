"""Fulfilment risk scoring and case-resolution suggestions, fitted on the portal's own history.

Two small, transparent models, plain Python (no numerical libraries, nothing downloaded):

* **Order risk** — a logistic regression over a handful of named features (how often the order's
  items, locations and zones were short-picked, equipment faults in its zones, how close the carrier
  cutoff is, customer tier, order size, partial allocation). Fitted by Newton's method with a small
  ridge penalty; every score comes with the features that pushed it up, in plain words.
* **Case resolution** — naive Bayes over a case's context (customer tier, split/substitution
  allowed, severity, materiality band, warehouse, machine or person): the resolution people chose
  most often for similar cases, with its posterior as the confidence and the evidence as reasons.

Until ``manage.py retrain_risk`` has fitted a model the order score uses the documented prior
weights below, and no resolution is suggested.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

FEATURES = [
    "item_short_rate",
    "location_short_rate",
    "zone_short_rate",
    "zone_fault_rate",
    "equipment_down",
    "cutoff_pressure",
    "key_account",
    "priority_customer",
    "lines_count",
    "log_units",
    "partially_allocated",
]
FEATURE_WORDS = {
    "item_short_rate": "an item on it is often short-picked",
    "location_short_rate": "a location it picks from is often short",
    "zone_short_rate": "a zone it picks from is often short",
    "zone_fault_rate": "equipment in its zones faults often",
    "equipment_down": "equipment in its zones is down now",
    "cutoff_pressure": "the carrier cutoff is close",
    "key_account": "key-account customer",
    "priority_customer": "priority customer",
    "lines_count": "many lines",
    "log_units": "many units",
    "partially_allocated": "not fully allocated",
}
# The prior, used until a model is fitted: raw-unit weights chosen by hand, documented here.
PRIOR = {
    "kind": "prior",
    "features": FEATURES,
    "means": [0.0] * len(FEATURES),
    "scales": [1.0] * len(FEATURES),
    "weights": [8.0, 5.0, 4.0, 2.0, 1.5, 1.2, 0.0, 0.0, 0.08, 0.15, 1.0],
    "bias": -3.5,
    "prior_short_rate": 0.03,
    "prior_strength": 20.0,
    "rates": {"item": {}, "location": {}, "zone": {}},
    "zone_fault_rate": {},
    "resolution": {},
    "threshold": 0.5,
}
SHORT_STATES = ("short",)
RIDGE = 1.0
CACHE_SECONDS = 15.0


# --- the active model ----------------------------------------------------------------------

_cache: dict = {"checked": 0.0, "version": None, "parameters": PRIOR}


def forget_model() -> None:
    """Drop the cached parameters (after training, or in tests)."""
    _cache.update(checked=0.0, version=None, parameters=PRIOR)


def active_parameters() -> tuple[int | None, dict]:
    """The active model's version and parameters (re-read at most every few seconds per process)."""
    from automation.models import RiskModel

    if time.monotonic() - _cache["checked"] > CACHE_SECONDS:
        row = RiskModel.objects.filter(is_active=True).values_list("version", flat=True).first()
        if row != _cache["version"]:
            parameters = PRIOR if row is None else RiskModel.objects.get(version=row).parameters
            _cache.update(version=row, parameters=parameters)
        _cache["checked"] = time.monotonic()
    return _cache["version"], _cache["parameters"]


# --- features ------------------------------------------------------------------------------


def smoothed_rate(counts, parameters: dict) -> float:
    """(shorts + m·p) / (picks + m): a rate that leans on the network average when there is little history."""
    prior, strength = parameters["prior_short_rate"], parameters["prior_strength"]
    shorts, picks = counts if counts else (0, 0)
    return (shorts + strength * prior) / (picks + strength)


def _cutoff_pressure(*, cutoff_at: dt.datetime | None, ship_date, now: dt.datetime, today) -> float:
    if cutoff_at is None or (ship_date is not None and ship_date > today):
        return 0.0
    hours_left = (cutoff_at - now).total_seconds() / 3600
    return max(0.0, min(1.0, 1 - hours_left / 12))


@dataclass
class OrderFacts:
    """What the features are computed from, gathered in a few queries (or from history when training)."""

    order_id: int
    order_number: str
    item_ids: list[int]
    location_ids: list[int]
    zones: list[str]  # "<warehouse_id>:<zone>"
    service_tier: str
    lines_count: int
    units: int
    partially_allocated: bool
    cutoff_pressure: float
    equipment_down: bool
    cutoff_at: dt.datetime | None = None


def features_of(facts: OrderFacts, parameters: dict, *, leave_out: dict | None = None) -> list[float]:
    """The feature vector of one order; `leave_out` removes the order's own picks from the rates (training)."""
    rates = parameters["rates"]

    def rate(table: str, key) -> float:
        counts = rates[table].get(str(key))
        if leave_out and counts:
            own = leave_out[table].get(str(key), (0, 0))
            counts = (counts[0] - own[0], counts[1] - own[1])
        return smoothed_rate(counts, parameters)

    prior = smoothed_rate(None, parameters)
    return [
        max((rate("item", i) for i in facts.item_ids), default=prior),
        max((rate("location", loc) for loc in facts.location_ids), default=prior),
        max((rate("zone", z) for z in facts.zones), default=prior),
        max((parameters["zone_fault_rate"].get(z, 0.0) for z in facts.zones), default=0.0),
        1.0 if facts.equipment_down else 0.0,
        facts.cutoff_pressure,
        1.0 if facts.service_tier == "key_account" else 0.0,
        1.0 if facts.service_tier == "priority" else 0.0,
        float(facts.lines_count),
        math.log1p(facts.units),
        1.0 if facts.partially_allocated else 0.0,
    ]


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1 / (1 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1 + exp)


def predict(vector: list[float], parameters: dict) -> tuple[float, list[tuple[str, float]]]:
    """The probability and each feature's contribution to the log-odds (for the reasons)."""
    contributions = []
    total = parameters["bias"]
    for name, value, mean, scale, weight in zip(
        parameters["features"], vector, parameters["means"], parameters["scales"], parameters["weights"], strict=True
    ):
        part = weight * (value - mean) / scale
        contributions.append((name, part))
        total += part
    return _sigmoid(total), contributions


def reasons_from(contributions, vector, parameters: dict, *, top: int = 4) -> list[str]:
    """The features that raised the score most, in words with their values."""
    values = dict(zip(parameters["features"], vector, strict=True))
    prior = smoothed_rate(None, parameters)
    words = []
    for name, part in sorted(contributions, key=lambda item: -item[1]):
        if part <= 0.05 or len(words) >= top:
            break
        value = values[name]
        if name.endswith("short_rate"):
            detail = f"{value:.0%} of picks short vs {prior:.0%} typical"
        elif name == "zone_fault_rate":
            detail = f"{value:.2f} faults per unit per day"
        elif name == "cutoff_pressure":
            detail = f"pressure {value:.2f}"
        elif name in ("lines_count",):
            detail = f"{int(value)} lines"
        elif name == "log_units":
            detail = f"{int(round(math.expm1(value)))} units"
        else:
            detail = ""
        words.append(f"{FEATURE_WORDS[name]}{f' ({detail})' if detail else ''}")
    return words or ["nothing stands out; close to the usual risk"]


@dataclass
class Assessment:
    """An order's score with the reasons behind it."""

    order_id: int
    order_number: str
    score: float
    reasons: list[str]
    features: dict[str, float]
    model_version: int | None
    cutoff_at: dt.datetime | None


def gather_facts(order_id: int, *, now: dt.datetime) -> OrderFacts | None:
    """Collect an open order's facts: the order, its lines, its reservations' locations and its zones' units."""
    from automation.models import Equipment
    from inventory.models import Reservation
    from orchestration.models import Order, OrderLine
    from orchestration.services import carrier_cutoff, local_now

    order = (
        Order.objects.select_related("customer", "warehouse")
        .prefetch_related("warehouse__carrier_cutoffs")
        .filter(pk=order_id)
        .first()
    )
    if order is None:
        return None
    lines = list(
        OrderLine.objects.filter(order_id=order_id)
        .exclude(status=OrderLine.Status.CANCELLED)
        .values_list("pk", "item_id", "quantity", "allocated_quantity", "picked_quantity", "shipped_quantity")
    )
    locations = list(
        Reservation.objects.filter(order_line_id__in=[line[0] for line in lines], status=Reservation.Status.RESERVED)
        .values_list("stock_level__location_id", "stock_level__location__zone")
        .distinct()
    )
    zones = sorted({zone for _, zone in locations})
    down = (
        Equipment.objects.filter(warehouse_id=order.warehouse_id, is_active=True)
        .exclude(status__in=Equipment.DISPATCHABLE)
        .values_list("zone", "capabilities")
    )
    equipment_down = any(zone in zones or set(caps.get("zones", [])) & set(zones) for zone, caps in down)
    cutoff_at = carrier_cutoff(order, now)
    return OrderFacts(
        order_id=order.pk,
        order_number=order.number,
        item_ids=sorted({line[1] for line in lines}),
        location_ids=sorted({loc for loc, _ in locations}),
        zones=[f"{order.warehouse_id}:{z}" for z in zones],
        service_tier=order.customer.service_tier,
        lines_count=len(lines),
        units=sum(line[2] for line in lines),
        partially_allocated=order.status in (Order.Status.PARTIALLY_ALLOCATED, Order.Status.BACKORDERED)
        or any(line[3] + line[4] + line[5] < line[2] for line in lines),
        cutoff_pressure=_cutoff_pressure(
            cutoff_at=cutoff_at,
            ship_date=order.requested_ship_date,
            now=now,
            today=local_now(order.warehouse, now).date(),
        ),
        equipment_down=equipment_down,
        cutoff_at=cutoff_at,
    )


def assess_order(order_id: int, *, now: dt.datetime) -> Assessment | None:
    """Score one order with the active model."""
    facts = gather_facts(order_id, now=now)
    if facts is None:
        return None
    version, parameters = active_parameters()
    vector = features_of(facts, parameters)
    score, contributions = predict(vector, parameters)
    return Assessment(
        order_id=facts.order_id,
        order_number=facts.order_number,
        score=round(score, 4),
        reasons=reasons_from(contributions, vector, parameters),
        features=dict(zip(FEATURES, vector, strict=True)),
        model_version=version,
        cutoff_at=facts.cutoff_at,
    )


# --- fitting the order model ---------------------------------------------------------------


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Solve matrix · x = vector by Gaussian elimination with partial pivoting (small, dense systems)."""
    size = len(vector)
    rows = [row[:] + [vector[i]] for i, row in enumerate(matrix)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        if abs(rows[col][col]) < 1e-12:
            continue
        for r in range(col + 1, size):
            factor = rows[r][col] / rows[col][col]
            if factor:
                for c in range(col, size + 1):
                    rows[r][c] -= factor * rows[col][c]
    solution = [0.0] * size
    for r in range(size - 1, -1, -1):
        if abs(rows[r][r]) < 1e-12:
            continue
        solution[r] = (rows[r][size] - sum(rows[r][c] * solution[c] for c in range(r + 1, size))) / rows[r][r]
    return solution


def fit_logistic(
    samples: list[list[float]], labels: list[int], *, ridge: float = RIDGE, iterations: int = 30
) -> tuple[list[float], list[float], list[float], float]:
    """Fit standardised logistic regression by Newton's method; returns means, scales, weights, bias."""
    size = len(samples[0])
    count = len(samples)
    means = [sum(s[j] for s in samples) / count for j in range(size)]
    scales = []
    for j in range(size):
        variance = sum((s[j] - means[j]) ** 2 for s in samples) / count
        scales.append(math.sqrt(variance) if variance > 1e-12 else 1.0)
    rows = [[1.0] + [(s[j] - means[j]) / scales[j] for j in range(size)] for s in samples]
    beta = [0.0] * (size + 1)
    base = sum(labels) / count
    beta[0] = math.log(max(base, 1e-4) / max(1 - base, 1e-4))
    for _ in range(iterations):
        gradient = [0.0] * (size + 1)
        hessian = [[0.0] * (size + 1) for _ in range(size + 1)]
        for row, label in zip(rows, labels, strict=True):
            p = _sigmoid(sum(b * x for b, x in zip(beta, row, strict=True)))
            weight = p * (1 - p)
            error = label - p
            for a in range(size + 1):
                gradient[a] += error * row[a]
                wa = weight * row[a]
                hessian_row = hessian[a]
                for b in range(a, size + 1):
                    hessian_row[b] += wa * row[b]
        for a in range(size + 1):
            for b in range(a):
                hessian[a][b] = hessian[b][a]
            if a:  # the intercept is not penalised
                gradient[a] -= ridge * beta[a]
                hessian[a][a] += ridge
        step = _solve(hessian, gradient)
        beta = [b + s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-6:
            break
    return means, scales, beta[1:], beta[0]


@dataclass
class TrainingReport:
    """What a retraining saw and how well the model did on history it was not fitted on."""

    version: int | None = None
    orders: int = 0
    train_orders: int = 0
    test_orders: int = 0
    base_rate: float = 0.0
    metrics: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    resolution_metrics: dict = field(default_factory=dict)
    note: str = ""


@dataclass
class _Sample:
    facts: OrderFacts
    label: int
    created_at: dt.datetime
    own: dict


def _history_samples(*, since: dt.datetime | None) -> list[_Sample]:
    """Orders whose picking finished, with the facts they had and whether any pick came up short."""
    from automation.models import EquipmentFault
    from orchestration.models import Order, OrderLine, Task

    picks = list(
        Task.objects.filter(
            kind=Task.Kind.PICK,
            status__in=[Task.Status.COMPLETED, Task.Status.SHORT],
            order__isnull=False,
            **({"created_at__gte": since} if since else {}),
        ).values_list(
            "order_id", "item_id", "location_id", "warehouse_id", "zone", "status", "created_at", "finished_at"
        )
    )
    open_orders = set(
        Task.objects.filter(kind=Task.Kind.PICK, status__in=Task.OPEN_STATES).values_list("order_id", flat=True)
    )
    by_order: dict[int, list] = defaultdict(list)
    for row in picks:
        if row[0] not in open_orders:
            by_order[row[0]].append(row)
    if not by_order:
        return []
    orders = {
        o.pk: o
        for o in Order.objects.filter(pk__in=by_order)
        .select_related("customer", "warehouse")
        .prefetch_related("warehouse__carrier_cutoffs")
    }
    lines = defaultdict(list)
    for order_id, item_id, quantity in OrderLine.objects.filter(order_id__in=by_order).values_list(
        "order_id", "item_id", "quantity"
    ):
        lines[order_id].append((item_id, quantity))
    partial = set(
        Order.history.filter(
            id__in=list(by_order), status__in=[Order.Status.PARTIALLY_ALLOCATED, Order.Status.BACKORDERED]
        )
        .values_list("id", flat=True)
        .distinct()
    )
    faults = list(
        EquipmentFault.objects.values_list(
            "equipment__warehouse_id", "equipment__zone", "equipment__capabilities", "opened_at", "cleared_at"
        )
    )
    from orchestration.services import carrier_cutoff, local_now

    samples = []
    for order_id, rows in by_order.items():
        order = orders.get(order_id)
        if order is None:
            continue
        zones = sorted({f"{r[3]}:{r[4]}" for r in rows})
        started = min(r[6] for r in rows)
        finished = max((r[7] or r[6]) for r in rows)
        down = any(
            (f"{wh}:{zone}" in zones or {f"{wh}:{z}" for z in caps.get("zones", [])} & set(zones))
            and opened <= finished
            and (cleared is None or cleared >= started)
            for wh, zone, caps, opened, cleared in faults
        )
        released = order.released_at or started
        cutoff_at = carrier_cutoff(order, released)
        own: dict = {"item": Counter(), "location": Counter(), "zone": Counter()}
        own_pairs = {
            "item": defaultdict(lambda: [0, 0]),
            "location": defaultdict(lambda: [0, 0]),
            "zone": defaultdict(lambda: [0, 0]),
        }
        for r in rows:
            short = r[5] in SHORT_STATES
            for table, key in (("item", r[1]), ("location", r[2]), ("zone", f"{r[3]}:{r[4]}")):
                own_pairs[table][str(key)][0] += short
                own_pairs[table][str(key)][1] += 1
        own = {table: {k: tuple(v) for k, v in pairs.items()} for table, pairs in own_pairs.items()}
        order_lines = lines.get(order_id, [])
        facts = OrderFacts(
            order_id=order_id,
            order_number=order.number,
            item_ids=sorted({i for i, _ in order_lines}),
            location_ids=sorted({r[2] for r in rows if r[2]}),
            zones=zones,
            service_tier=order.customer.service_tier,
            lines_count=len(order_lines),
            units=sum(q for _, q in order_lines),
            partially_allocated=order_id in partial,
            cutoff_pressure=_cutoff_pressure(
                cutoff_at=cutoff_at,
                ship_date=order.requested_ship_date,
                now=released,
                today=local_now(order.warehouse, released).date(),
            ),
            equipment_down=down,
        )
        label = int(any(r[5] in SHORT_STATES for r in rows))
        samples.append(_Sample(facts=facts, label=label, created_at=order.created_at, own=own))
    samples.sort(key=lambda s: (s.created_at, s.facts.order_id))
    return samples


def _rate_tables(samples: list[_Sample]) -> dict:
    tables: dict = {
        "item": defaultdict(lambda: [0, 0]),
        "location": defaultdict(lambda: [0, 0]),
        "zone": defaultdict(lambda: [0, 0]),
    }
    for sample in samples:
        for table, counts in sample.own.items():
            for key, (short, picks) in counts.items():
                tables[table][key][0] += short
                tables[table][key][1] += picks
    return {table: {k: tuple(v) for k, v in rows.items()} for table, rows in tables.items()}


def _zone_fault_rates(*, days: int, now: dt.datetime) -> dict[str, float]:
    """Faults per unit per day over the last `days` days, per zone a unit serves."""
    from automation.models import Equipment, EquipmentFault

    units_per_zone: Counter = Counter()
    unit_zones = {}
    for pk, warehouse_id, zone, caps in Equipment.objects.values_list("pk", "warehouse_id", "zone", "capabilities"):
        zones = {f"{warehouse_id}:{zone}", *(f"{warehouse_id}:{z}" for z in (caps or {}).get("zones", []))}
        unit_zones[pk] = zones
        units_per_zone.update(zones)
    faults: Counter = Counter()
    for equipment_id in EquipmentFault.objects.filter(opened_at__gte=now - dt.timedelta(days=days)).values_list(
        "equipment_id", flat=True
    ):
        faults.update(unit_zones.get(equipment_id, ()))
    return {zone: faults[zone] / units_per_zone[zone] / days for zone in units_per_zone}


def _classification_metrics(scores: list[float], labels: list[int], threshold: float) -> dict:
    predicted = [s >= threshold for s in scores]
    tp = sum(1 for p, y in zip(predicted, labels, strict=True) if p and y)
    fp = sum(1 for p, y in zip(predicted, labels, strict=True) if p and not y)
    fn = sum(1 for p, y in zip(predicted, labels, strict=True) if not p and y)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return {
        "threshold": round(threshold, 3),
        "precision": precision,
        "recall": recall,
        "flagged": tp + fp,
        "true_positives": tp,
    }


def _auc(scores: list[float], labels: list[int]) -> float | None:
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        return None
    ranked = sorted(zip(scores, labels, strict=True))
    rank_sum, index = 0.0, 0
    while index < len(ranked):
        end = index
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[index][0]:
            end += 1
        average_rank = (index + end) / 2 + 1
        rank_sum += average_rank * sum(1 for k in range(index, end + 1) if ranked[k][1])
        index = end + 1
    return (rank_sum - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives))


def _best_threshold(scores: list[float], labels: list[int]) -> float:
    """The training threshold with the best F1 (imbalanced labels make 0.5 flag almost nothing)."""
    best, best_f1 = 0.5, -1.0
    for threshold in sorted({round(s, 3) for s in scores}):
        m = _classification_metrics(scores, labels, threshold)
        if m["precision"] and m["recall"]:
            f1 = 2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"])
            if f1 > best_f1:
                best, best_f1 = threshold, f1
    return best


def train(
    *,
    holdout: float = 0.2,
    days: int = 180,
    now: dt.datetime | None = None,
    activate: bool = True,
    trained_by: str = "system:retrain_risk",
    min_orders: int = 30,
) -> TrainingReport:
    """Fit both models on history, measure them on the most recent `holdout` slice, store (and activate) them."""
    from automation.models import RiskModel

    now = now or timezone.now()
    report = TrainingReport()
    samples = _history_samples(since=now - dt.timedelta(days=days))
    report.orders = len(samples)
    parameters = {**PRIOR, "kind": "logistic", "rates": {"item": {}, "location": {}, "zone": {}}}
    parameters["zone_fault_rate"] = _zone_fault_rates(days=min(days, 30), now=now)
    if len(samples) < min_orders or len({s.label for s in samples}) < 2:
        report.note = (
            f"Only {len(samples)} finished orders with both outcomes in the last {days} days "
            f"(need {min_orders}); the order score keeps its prior weights."
        )
        parameters.update(kind="prior", weights=PRIOR["weights"], bias=PRIOR["bias"])
    else:
        split = max(1, int(len(samples) * (1 - holdout)))
        train_set, test_set = samples[:split], samples[split:]
        report.train_orders, report.test_orders = len(train_set), len(test_set)
        report.base_rate = sum(s.label for s in samples) / len(samples)
        parameters["prior_short_rate"] = max(1e-3, sum(s.label for s in train_set) / len(train_set) / 2)
        parameters["rates"] = _rate_tables(train_set)
        vectors = [features_of(s.facts, parameters, leave_out=s.own) for s in train_set]
        labels = [s.label for s in train_set]
        means, scales, weights, bias = fit_logistic(vectors, labels)
        parameters.update(means=means, scales=scales, weights=weights, bias=bias)
        train_scores = [predict(v, parameters)[0] for v in vectors]
        parameters["threshold"] = _best_threshold(train_scores, labels)
        test_scores = [predict(features_of(s.facts, parameters), parameters)[0] for s in test_set]
        test_labels = [s.label for s in test_set]
        report.metrics = {
            "at_0_5": _classification_metrics(test_scores, test_labels, 0.5),
            "at_fitted": _classification_metrics(test_scores, test_labels, parameters["threshold"]),
            "auc": _auc(test_scores, test_labels),
            "test_positives": sum(test_labels),
        }
        # The production model learns from everything, with the held-out figures as its quality record.
        parameters["rates"] = _rate_tables(samples)
        report.weights = {name: round(w / s, 4) for name, w, s in zip(FEATURES, weights, scales, strict=True)}
    parameters["resolution"], report.resolution_metrics = _train_resolutions(holdout=holdout, days=days, now=now)
    with transaction.atomic():
        version = (RiskModel.objects.order_by("-version").values_list("version", flat=True).first() or 0) + 1
        if activate:
            RiskModel.objects.filter(is_active=True).update(is_active=False)
        RiskModel.objects.create(
            version=version,
            trained_at=now,
            is_active=activate,
            parameters=parameters,
            trained_by=trained_by,
            metrics={
                "orders": report.orders,
                "train_orders": report.train_orders,
                "test_orders": report.test_orders,
                "base_rate": report.base_rate,
                **report.metrics,
                "resolution": report.resolution_metrics,
                "note": report.note,
            },
        )
    report.version = version
    forget_model()
    return report


# --- case resolution suggestions -----------------------------------------------------------


def _band(value) -> str:
    try:
        amount = Decimal(str(value))
    except Exception:
        return "unknown"
    if amount < 100:
        return "<100"
    if amount < 1000:
        return "100-1000"
    return ">=1000"


def case_features(case) -> dict[str, str]:
    """The categorical facts of a case the resolution model conditions on."""
    context = getattr(case, "context", None) or {}
    warehouse = getattr(case, "warehouse", None)
    tier = getattr(case, "customer_tier", "") or context.get("service_tier", "")
    return {
        "customer_tier": str(tier or "none"),
        "split_allowed": str(context.get("allows_split_shipment", "unknown")),
        "substitution_allowed": str(context.get("allows_substitution", "unknown")),
        "severity": str(getattr(case, "severity", "") or "none"),
        "materiality": _band(getattr(case, "materiality", 0) or 0),
        "warehouse": str(getattr(warehouse, "code", "") or "none"),
        "performer": str(context.get("performer", "unknown")),
    }


FEATURE_LABELS = {
    "customer_tier": "customer tier",
    "split_allowed": "customer accepts split shipments",
    "substitution_allowed": "customer accepts substitutes",
    "severity": "severity",
    "materiality": "value at stake",
    "warehouse": "warehouse",
    "performer": "picked by",
}


def _resolved_cases(*, since: dt.datetime):
    from exceptions.models import Case

    resolution_field = _resolution_field()
    if resolution_field is None:
        return [], None
    rows = (
        Case.objects.filter(**{f"{resolution_field}__gt": ""}, created_at__gte=since)
        .select_related("type", "warehouse")
        .order_by("created_at", "pk")
    )
    return list(rows), resolution_field


def _resolution_field() -> str | None:
    try:
        from exceptions.models import Case
    except ImportError:
        return None
    names = {f.name for f in Case._meta.get_fields()}
    return next((name for name in ("resolution_code", "resolution") if name in names), None)


def _resolution_of(case, field_name: str) -> str:
    value = getattr(case, field_name, "")
    return getattr(value, "code", value) or ""


def _fit_resolutions(cases, field_name: str) -> dict:
    model: dict = {}
    for case in cases:
        type_code = case.type.code
        resolution = _resolution_of(case, field_name)
        entry = model.setdefault(type_code, {"total": 0, "counts": {}, "features": {}})
        entry["total"] += 1
        entry["counts"][resolution] = entry["counts"].get(resolution, 0) + 1
        for name, value in case_features(case).items():
            table = entry["features"].setdefault(resolution, {}).setdefault(name, {})
            table[value] = table.get(value, 0) + 1
    return model


def _posterior(entry: dict, features: dict[str, str], allowed: set[str] | None) -> list[tuple[str, float, list]]:
    total = entry["total"]
    choices = [r for r in entry["counts"] if allowed is None or r in allowed]
    if not choices:
        return []
    vocabulary = defaultdict(set)
    for tables in entry["features"].values():
        for name, table in tables.items():
            vocabulary[name].update(table)
    # A value never seen for this case type tells nothing about the resolution: leave it out.
    known = {name: value for name, value in features.items() if value in vocabulary[name]}
    logs, evidence = {}, {}
    for resolution in choices:
        count = entry["counts"][resolution]
        log = math.log((count + 1) / (total + len(choices)))
        notes = []
        for name, value in known.items():
            table = entry["features"].get(resolution, {}).get(name, {})
            size = len(vocabulary[name]) + 1
            likelihood = (table.get(value, 0) + 1) / (count + size)
            overall = sum(entry["features"].get(r, {}).get(name, {}).get(value, 0) for r in entry["counts"])
            base = (overall + 1) / (total + size)
            log += math.log(likelihood)
            if likelihood / base > 1.3 and table.get(value, 0) >= 2:
                notes.append(
                    (
                        likelihood / base,
                        f"{FEATURE_LABELS[name]} is {value} "
                        f"(seen in {table.get(value, 0)} of {count} {resolution} cases)",
                    )
                )
        logs[resolution] = log
        evidence[resolution] = [text for _, text in sorted(notes, reverse=True)]
    peak = max(logs.values())
    norm = sum(math.exp(v - peak) for v in logs.values())
    return sorted(((r, math.exp(v - peak) / norm, evidence[r]) for r, v in logs.items()), key=lambda x: -x[1])


def _train_resolutions(*, holdout: float, days: int, now: dt.datetime) -> tuple[dict, dict]:
    try:
        cases, field_name = _resolved_cases(since=now - dt.timedelta(days=days))
    except Exception as error:  # the exceptions app may not be migrated where this runs
        return {}, {"note": f"no case history: {error}"}
    if not cases:
        return {}, {"cases": 0, "note": "no resolved cases yet"}
    split = max(1, int(len(cases) * (1 - holdout)))
    model = _fit_resolutions(cases[:split], field_name)
    correct = tested = 0
    for case in cases[split:]:
        entry = model.get(case.type.code)
        if not entry:
            continue
        ranked = _posterior(entry, case_features(case), None)
        if ranked:
            tested += 1
            correct += ranked[0][0] == _resolution_of(case, field_name)
    metrics = {
        "cases": len(cases),
        "train_cases": split,
        "test_cases": tested,
        "accuracy": correct / tested if tested else None,
    }
    return _fit_resolutions(cases, field_name), metrics


@dataclass
class Suggestion:
    """A suggested resolution with how sure the model is and why."""

    resolution: str
    confidence: float
    reasons: list[str]
    model_version: int | None


MIN_CASES_FOR_SUGGESTION = 5


def allowed_resolutions(case) -> set[str] | None:
    """The resolution codes the case's type allows, when the exceptions app can say."""
    case_type = getattr(case, "type", None)
    for attribute in ("allowed_resolutions", "resolutions"):
        value = getattr(case_type, attribute, None)
        if isinstance(value, list | tuple | set):
            return {item if isinstance(item, str) else item.get("code", "") for item in value}
        if isinstance(value, dict):
            return set(value)
    return None


def suggest_resolution(case) -> Suggestion | None:
    """The resolution people chose most for cases like this one (None without enough history)."""
    version, parameters = active_parameters()
    entry = parameters.get("resolution", {}).get(case.type.code)
    if not entry or entry["total"] < MIN_CASES_FOR_SUGGESTION:
        return None
    ranked = _posterior(entry, case_features(case), allowed_resolutions(case))
    if not ranked:
        return None
    resolution, confidence, evidence = ranked[0]
    share = entry["counts"][resolution]
    reasons = [
        f"{share} of {entry['total']} past {case.type.code} cases were resolved with {resolution}",
        *evidence[:3],
    ]
    return Suggestion(resolution=resolution, confidence=round(confidence, 4), reasons=reasons, model_version=version)


def open_orders_to_score(*, limit: int) -> list[int]:
    """Open orders not yet scored, oldest first (a catch-up for orders that skipped the allocation hook)."""
    from orchestration.models import Order

    return list(
        Order.objects.filter(
            Q(risk_score__isnull=True),
            status__in=[
                Order.Status.ALLOCATED,
                Order.Status.PARTIALLY_ALLOCATED,
                Order.Status.BACKORDERED,
                Order.Status.RELEASED,
                Order.Status.PICKING,
            ],
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
