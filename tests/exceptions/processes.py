"""Worker processes for the exceptions concurrency tests. Free of model imports: each child sets Django up itself."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import traceback


def _child(env: dict, database_name: str, target: str, argument, barrier, results) -> None:
    try:
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connections

        connections["default"].settings_dict["NAME"] = database_name
        connections["default"].ensure_connection()
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        barrier.wait(timeout=60)
        value = function(argument)
        connections.close_all()
        results.put(("ok", value))
    except BaseException:  # reported to the test, which fails with the child's traceback
        results.put(("error", traceback.format_exc()))


def run_in_processes(target: str, arguments: list) -> list:
    """Run ``module:function(argument)`` in one process per argument, all starting at once; their results,
    in the order the processes finished (not the order of the arguments)."""
    from django.db import connections

    database_name = connections["default"].settings_dict["NAME"]
    env = {"DJANGO_SETTINGS_MODULE": "portal.settings_test", "DATABASE_URL": os.environ.get("DATABASE_URL", "")}
    env = {key: value for key, value in env.items() if value}
    connections.close_all()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(arguments))
    results = context.Queue()
    workers = [
        context.Process(target=_child, args=(env, database_name, target, argument, barrier, results), daemon=True)
        for argument in arguments
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]
    return [value for _, value in outcomes]


# --- targets --------------------------------------------------------------------------


def check_sla_at(now_iso: str) -> int:
    import datetime as dt

    from exceptions import services

    return services.cases_check_sla(now=dt.datetime.fromisoformat(now_iso))


def raise_same_case(label: str) -> int:
    from exceptions import services
    from portal.actors import Actor

    case = services.case_raise(
        type_code="short_pick",
        subject_type="test.subject",
        subject_id="raced",
        summary=f"raised by {label}",
        actor=Actor.system(label),
        reason="race",
    )
    return case.pk
