"""Targets for processes racing on orders (run by tests.exceptions.processes.run_in_processes).

Each acts on a list of ids one after the other and counts what it did and what the services refused
(a refusal is the loser of a race learning the winner's outcome). Anything else, a deadlock above all,
fails the test with the child's traceback.
"""

from __future__ import annotations


def act(spec: tuple[str, list[int]]) -> dict:
    """Run the named action of this module over its ids; its counts, named (processes finish in any order)."""
    name, ids = spec
    return {"action": name, **globals()[name](ids)}


def by_action(outcomes: list[dict]) -> dict[str, dict[str, int]]:
    """The racing processes' counts by action (for two processes with different actions)."""
    return {outcome.pop("action"): outcome for outcome in outcomes}


def _each(ids: list[int], action) -> dict[str, int]:
    from portal.domain import DomainError

    counts = {"done": 0, "refused": 0}
    for pk in ids:
        try:
            action(pk)
            counts["done"] += 1
        except DomainError:
            counts["refused"] += 1
    return counts


def complete_tasks(task_ids: list[int]) -> dict[str, int]:
    """A person finishing tasks at the bench or the shelf."""
    from orchestration import services
    from portal.actors import Actor

    person = Actor.system("race-person")
    return _each(task_ids, lambda pk: services.task_complete(task=pk, actor=person))


def report_packs(order_ids: list[int]) -> dict[str, int]:
    """The WMS reporting orders packed."""
    from orchestration import services
    from portal.actors import Actor

    wms = Actor.partner("race-wms")
    return _each(order_ids, lambda pk: services.shipment_pack(order=pk, actor=wms))


def cancel_orders(order_ids: list[int]) -> dict[str, int]:
    """Customer service cancelling orders."""
    from orchestration import services
    from portal.actors import Actor

    agent = Actor.system("race-service")
    return _each(order_ids, lambda pk: services.order_cancel(order=pk, actor=agent, reason="Customer withdrew"))


def recheck_credit(customer_ids: list[int]) -> dict[str, int]:
    """A worker re-checking customers' credit holds after a payment (the count is of orders released)."""
    from orchestration import services
    from portal.actors import Actor

    policy = Actor.policy("race-credit")
    released = sum(
        services.orders_recheck_credit_holds(customer=pk, actor=policy, reason="Payment booked") for pk in customer_ids
    )
    return {"done": released, "refused": 0}
