"""`manage.py check_stock`: proves stock equals the ledger and reserved equals active reservations."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from inventory import events, services
from inventory.models import StockLevel
from portal.models import DomainEvent
from tests.inventory import factories


def _run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("check_stock", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def stocked(warehouse, pick_a, pick_b, item):
    """Two rows with stock; one with an active reservation."""
    first = factories.stock(item, pick_a, 10)
    second = factories.stock(item, pick_b, 5)
    services.reservation_reserve_lines(
        warehouse=warehouse, demands=[factories.demand(1, item, 3)], actor=factories.ACTOR, reason="Allocated"
    )
    return first, second


def _corrupt(level: StockLevel, **figures) -> None:
    """What a hand-edit in SQL or a bug would do: change the row without the ledger."""
    StockLevel.objects.filter(pk=level.pk).update(**figures)


def test_a_consistent_database_passes(stocked):
    code, out, _ = _run()
    assert code == 0
    assert "OK: every stock row equals its ledger and its active reservations" in out


def test_a_corrupted_row_fails_with_a_report_naming_the_row_and_the_figures(stocked):
    first, _ = stocked
    _corrupt(first, on_hand=12, reserved=1)
    code, out, err = _run()
    assert code == 1
    assert f"stock {first.pk} DCI/A-01 GLOVE-L" in out
    assert "on hand 12 but the ledger sums to 10" in out
    assert "reserved 1 but active reservations add up to 3" in out
    assert "Nothing was changed" in err
    assert StockLevel.objects.get(pk=first.pk).on_hand == 12  # read-only without --repair


def test_json_output_for_monitoring(stocked):
    first, _ = stocked
    _corrupt(first, quarantined=2)
    code, out, _ = _run("--json")
    assert code == 1
    (row,) = json.loads(out)["discrepancies"]
    assert (row["id"], row["quarantined"], row["ledger_quarantined"]) == (first.pk, 2, 0)


def test_repair_needs_a_reason():
    with pytest.raises(CommandError, match="--repair needs --reason"):
        call_command("check_stock", "--repair")


def test_repair_sets_the_row_back_to_the_ledger_and_records_it(stocked):
    first, second = stocked
    _corrupt(first, on_hand=12, reserved=1)
    code, out, _ = _run("--repair", "--reason", "INC-7: row edited by hand", "--yes")
    assert code == 0, out
    first.refresh_from_db()
    assert (first.on_hand, first.reserved, first.quarantined) == (10, 3, 0)
    event = DomainEvent.objects.get(name=events.STOCK_RECONCILED)
    assert event.actor == "system:check-stock"
    assert event.reason == "INC-7: row edited by hand"
    assert event.payload["before"] == {"on_hand": 12, "reserved": 1, "quarantined": 0}
    assert event.payload["after"] == {"on_hand": 10, "reserved": 3, "quarantined": 0}
    assert _run()[0] == 0


def test_repair_is_refused_without_confirmation(stocked, monkeypatch):
    first, _ = stocked
    _corrupt(first, on_hand=11)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    code, _, err = _run("--repair", "--reason", "INC-8")
    assert code == 2
    assert "nothing was changed" in err
    assert StockLevel.objects.get(pk=first.pk).on_hand == 11


def test_repair_refuses_mass_drift(stocked):
    first, second = stocked
    _corrupt(first, on_hand=11)
    _corrupt(second, on_hand=6)
    code, _, err = _run("--repair", "--reason", "INC-9", "--yes", "--max-rows", "1")
    assert code == 2
    assert "Refusing to repair 2 rows" in err
    assert not DomainEvent.objects.filter(name=events.STOCK_RECONCILED).exists()


def test_a_row_whose_sources_disagree_with_each_other_is_left_for_a_person(stocked):
    first, _ = stocked
    # The reservations promise 3 of this row; a bad ledger line says only 2 are on hand.
    from inventory.models import StockMovement

    StockMovement.objects.create(
        stock_level=first, kind="adjustment", on_hand_delta=-8, actor="system:bug", reason="bad import"
    )
    code, out, err = _run("--repair", "--reason", "INC-10", "--yes")
    assert code == 1
    assert "NOT repaired" in out
    assert "count the location or release reservations" in out
    assert "still disagree" in err
    first.refresh_from_db()
    assert first.on_hand == 10
