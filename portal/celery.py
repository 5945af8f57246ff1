"""Celery application; the worker writes a heartbeat to Redis that /healthz reads."""

from __future__ import annotations

import os
import socket
import time

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

HEARTBEAT_KEY = "portal:health:worker:{hostname}"


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes `<hostname> -> unix time` every few seconds while the worker's consumer runs."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.timer_ref = None

    def start(self, worker):
        from django.conf import settings

        interval = settings.WORKER_HEARTBEAT_SECONDS
        self.beat(worker)
        self.timer_ref = worker.timer.call_repeatedly(interval, self.beat, (worker,), priority=10)

    def stop(self, worker):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def beat(self, worker):
        from django.conf import settings

        from portal.health import redis_connection

        hostname = getattr(worker, "hostname", None) or socket.gethostname()
        try:
            redis_connection().set(
                HEARTBEAT_KEY.format(hostname=hostname),
                f"{time.time():.3f}",
                ex=settings.WORKER_HEARTBEAT_STALE_SECONDS * 4,
            )
        except Exception:  # a Redis outage must not kill the worker; /healthz reports it
            pass


app.steps["worker"].add(WorkerHeartbeat)
