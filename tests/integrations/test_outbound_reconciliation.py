"""Inventory reconciliation: the ERP's book (read through the ERP adapter over HTTP) against the ledger."""

from __future__ import annotations

import threading

import pytest

from integrations import reconciliation
from integrations.models import Partner
from integrations.simulator.receiver import SimulatorState, serve
from tests.automation import factories


@pytest.fixture
def erp_book(db):
    """The simulator's ERP (in a thread, over real HTTP); its stock book is set per test."""
    state = SimulatorState(secrets={}, seed=1)
    server = serve(state, host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    Partner.objects.create(
        code="erp", name="ERP", kind="erp", outbound_base_url=f"http://127.0.0.1:{server.server_address[1]}/erp"
    )
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def stocked(db):
    warehouse = factories.WarehouseFactory(code="DCR")
    factories.stocked_item(warehouse, zone="A", sku="REC-1", quantity=100)
    factories.stocked_item(warehouse, zone="A", sku="REC-2", quantity=40)
    return warehouse


def test_compare_flags_only_differences_beyond_the_threshold():
    mismatches, matching = reconciliation.compare({"A": 10, "B": 5, "C": 7}, {"A": 10, "B": 7}, threshold=1)
    assert matching == ["A"]
    assert mismatches == [
        {"sku": "B", "erp_on_hand": 5, "portal_on_hand": 7, "difference": 2},
        {"sku": "C", "erp_on_hand": 7, "portal_on_hand": 0, "difference": -7},
    ]


def test_the_ledger_is_summed_per_sku(stocked):
    assert reconciliation.ledger_on_hand(stocked) == {"REC-1": 100, "REC-2": 40}


def test_a_difference_raises_an_inventory_mismatch_case_and_clears_when_it_agrees(erp_book, stocked, settings):
    pytest.importorskip("exceptions.services")
    from exceptions.models import Case, ExceptionType

    if not ExceptionType.objects.filter(code="inventory_mismatch").exists():
        pytest.skip("inventory_mismatch type not configured")
    settings.INVENTORY_MISMATCH_THRESHOLD = 2
    erp_book.stock["DCR"] = {"REC-1": 95, "REC-2": 39}

    summary = reconciliation.inventory_reconcile()

    assert summary == {"compared": 2, "mismatches": 1, "errors": 0}
    case = Case.objects.get(type__code="inventory_mismatch")
    assert case.subject_id == "DCR:REC-1"
    assert case.context["difference"] == 5 and case.context["erp_on_hand"] == 95

    reconciliation.inventory_reconcile()  # still different: the same case, not a second one
    assert Case.objects.filter(type__code="inventory_mismatch").count() == 1

    erp_book.stock["DCR"]["REC-1"] = 100
    reconciliation.inventory_reconcile()
    case.refresh_from_db()
    assert case.status in Case.CLOSED_STATES


def test_an_unreachable_erp_is_counted_not_a_mismatch(stocked):
    Partner.objects.create(code="erp", name="ERP", kind="erp", outbound_base_url="http://127.0.0.1:9/erp")
    assert reconciliation.inventory_reconcile() == {"compared": 0, "mismatches": 0, "errors": 1}
