"""What the order flow does when other parts of the portal publish events (after commit, in a worker)."""

from __future__ import annotations

from orchestration import events, services
from portal.actors import Actor
from portal.events import subscribe

CREDIT_RECHECK = Actor.policy("credit-recheck")


def _recheck_credit_holds(event, reason: str) -> None:
    services.orders_recheck_credit_holds(
        customer=(event.payload or {})["customer_id"], actor=CREDIT_RECHECK, reason=reason
    )


@subscribe(events.CUSTOMER_CREDIT_UPDATED, key="orchestration.recheck_credit_holds")
def recheck_credit_holds(event) -> None:
    """The customer's credit changed: held orders that fit it now go ahead, where policy lets them."""
    customer = (event.payload or {}).get("customer")
    _recheck_credit_holds(event, f"Credit of {customer} changed ({event.reason or 'no reason given'})")


@subscribe(events.ORDER_CANCELLED, key="orchestration.recheck_credit_after_cancel")
def recheck_credit_after_cancel(event) -> None:
    """A cancelled order no longer weighs on its customer's credit: held orders may fit in the room it left."""
    payload = event.payload or {}
    _recheck_credit_holds(event, f"Order {payload.get('order')} of {payload.get('customer')} was cancelled")


@subscribe(events.ORDER_LINE_CHANGED, key="orchestration.recheck_credit_after_line_change")
def recheck_credit_after_line_change(event) -> None:
    """A cancelled or shortened line lowers its order's value: held orders of the customer may fit now."""
    payload = event.payload or {}
    if payload.get("change") in ("cancelled", "reduced"):
        _recheck_credit_holds(
            event, f"Line {payload.get('line_no')} of {payload.get('order')} was {payload.get('change')}"
        )
