"""Worker processes for the concurrency tests. Kept free of model imports: each child sets Django up itself."""

from __future__ import annotations

import os
import traceback


def allocate_orders(env: dict, database_name: str, order_ids: list[int], barrier, results) -> None:
    """One racing process: wait for the others, then allocate its orders as fast as it can."""
    try:
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connections

        connections["default"].settings_dict["NAME"] = database_name
        from orchestration import services
        from orchestration.models import Order
        from portal.actors import Actor
        from portal.domain import DomainError

        actor = Actor.system(f"racer-{os.getpid()}")
        orders = list(Order.objects.filter(pk__in=order_ids))
        connections["default"].ensure_connection()
        barrier.wait(timeout=120)
        refused = []
        for order in orders:
            try:
                services.order_allocate(order=order, actor=actor, reason="Race")
            except DomainError as error:
                refused.append(f"{order.number}: {error.message}")
        connections.close_all()
        results.put(("ok", refused))
    except BaseException:  # reported to the test, which fails with the child's traceback
        results.put(("error", traceback.format_exc()))


def settle_arrivals(env: dict, database_name: str, subject_keys: list[str], barrier, results) -> None:
    """One racing inbound worker: wait for the others, then drain the subjects (arrivals settled in batches)."""
    try:
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connections

        connections["default"].settings_dict["NAME"] = database_name
        from integrations import inbound

        connections["default"].ensure_connection()
        barrier.wait(timeout=120)
        settled = inbound.events_process_subjects(subject_keys=subject_keys)
        connections.close_all()
        results.put(("ok", settled))
    except BaseException:
        results.put(("error", traceback.format_exc()))
