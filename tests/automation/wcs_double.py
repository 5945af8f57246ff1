"""A warehouse control system played from the test: it reads the portal's real WCS outbox and answers
through the real inbound event handlers, on a simulated clock.

It acknowledges instructions (dropping a share of them, so acknowledgement timeouts happen), starts
and finishes work a few ticks later (a share of picks come up short), sends heartbeats, and can be
told to jam, fault, clear or fall silent per unit. Units that are jammed or silent make no progress
and acknowledge nothing; their in-progress work resumes when they return.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from automation import inbound

WCS = "wcs"


@dataclass
class Job:
    task_id: int
    seq: int
    equipment: str
    quantity: int
    state: str = "acknowledged"  # acknowledged → in_progress → done
    ticks_left: int = 2


@dataclass
class WcsDouble:
    units: list[str]
    rng: random.Random
    drop_rate: float = 0.05
    short_rate: float = 0.03
    jammed: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    jobs: dict[int, Job] = field(default_factory=dict)
    last_message_id: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "instructions": 0,
            "cancels": 0,
            "dropped": 0,
            "acknowledged": 0,
            "completed": 0,
            "short": 0,
            "stale_ignored": 0,
        }
    )

    def send(self, kind: str, payload: dict, now: dt.datetime):
        return inbound.handle({"type": kind, "partner": WCS, "occurred_at": now, "payload": payload})

    def down(self, unit: str) -> bool:
        return unit in self.jammed or unit in self.silent

    def read_outbox(self, now: dt.datetime) -> None:
        from integrations.models import OutboundMessage

        messages = list(
            OutboundMessage.objects.filter(pk__gt=self.last_message_id, partner__kind="wcs")
            .order_by("pk")
            .values_list("pk", "message_type", "payload")
        )
        for pk, message_type, payload in messages:
            self.last_message_id = pk
            unit, task_id, seq = payload["equipment"], payload["task_id"], payload["instruction_seq"]
            if message_type == "wcs.instruction_cancel":
                self.counts["cancels"] += 1
                job = self.jobs.get(task_id)
                if job and job.seq == seq:
                    del self.jobs[task_id]
                continue
            self.counts["instructions"] += 1
            if self.down(unit) or self.rng.random() < self.drop_rate:
                self.counts["dropped"] += 1  # lost on the way: the portal's acknowledgement timer notices
                continue
            outcome = self.send(
                "wcs.task.acknowledged", {"task_id": task_id, "instruction_seq": seq, "equipment": unit}, now
            )
            if outcome.applied:
                self.counts["acknowledged"] += 1
                self.jobs[task_id] = Job(task_id, seq, unit, payload["quantity"], ticks_left=self.rng.randint(1, 3))
            else:
                self.counts["stale_ignored"] += 1

    def work(self, now: dt.datetime) -> None:
        for job in list(self.jobs.values()):
            if self.down(job.equipment):
                continue
            payload = {"task_id": job.task_id, "instruction_seq": job.seq, "equipment": job.equipment}
            if job.state == "acknowledged":
                outcome = self.send("wcs.task.started", payload, now)
                job.state = "in_progress"
            else:
                job.ticks_left -= 1
                if job.ticks_left > 0:
                    continue
                if job.quantity > 1 and self.rng.random() < self.short_rate:
                    outcome = self.send("wcs.task.short", {**payload, "done_quantity": job.quantity - 1}, now)
                    self.counts["short"] += outcome.applied
                else:
                    outcome = self.send("wcs.task.completed", {**payload, "done_quantity": job.quantity}, now)
                    self.counts["completed"] += outcome.applied
                del self.jobs[job.task_id]
            if not outcome.applied:
                self.counts["stale_ignored"] += 1
                self.jobs.pop(job.task_id, None)

    def heartbeats(self, now: dt.datetime) -> None:
        for unit in self.units:
            if unit not in self.silent:
                self.send(
                    "wcs.heartbeat", {"equipment": unit, "status": "faulted" if unit in self.jammed else "online"}, now
                )

    def jam(self, unit: str, now: dt.datetime, *, kind: str = "jam") -> None:
        self.jammed.add(unit)
        self.send(f"wcs.equipment.{kind}", {"equipment": unit, "code": "E-SIM", "message": f"simulated {kind}"}, now)

    def clear(self, unit: str, now: dt.datetime) -> None:
        self.jammed.discard(unit)
        self.send("wcs.equipment.cleared", {"equipment": unit}, now)

    def tick(self, now: dt.datetime) -> None:
        self.heartbeats(now)
        self.read_outbox(now)
        self.work(now)
