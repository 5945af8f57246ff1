"""The simulator's warehouse control system: machines that take work instructions, report heartbeats,
jam, go silent and clear again, as a real WCS would tell the portal.

Each unit takes the portal's work instructions (``wcs.work_instruction``), acknowledges, starts and
completes them (or reports a short) as signed ``wcs.*`` events. A jammed unit reports the jam, keeps
sending "faulted" heartbeats and leaves its work where it stopped; a silent unit sends nothing at all
(the portal's heartbeat monitor must notice). Instructions for a unit that cannot work are dropped,
as a lost network packet would be: the portal's acknowledgement deadline must catch them.

Control (``POST /_control/wcs``): ``{"jam": ["amr-1"], "clear": [...], "silence": [...], "resume": [...],
"units": [...]}``; ``GET /_control/stats`` includes the floor's counters.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Unit:
    code: str
    jammed: bool = False
    silent: bool = False
    jobs: dict[int, int] = field(default_factory=dict)  # task id -> instruction seq it is working on

    @property
    def can_work(self) -> bool:
        return not (self.jammed or self.silent)


class MachineFloor:
    """The WCS side of the simulator. `send(event_type, payload)` posts a signed event to the portal;
    `later(seconds, action)` schedules work on the driver's agenda."""

    def __init__(
        self,
        *,
        send,
        later,
        units=(),
        heartbeat_seconds: float = 2.0,
        work_seconds: float = 1.0,
        short_rate: float = 0.0,
        seed: int | None = None,
    ):
        self.send = send
        self.later = later
        self.heartbeat_seconds = heartbeat_seconds
        self.work_seconds = work_seconds
        self.short_rate = short_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.units: dict[str, Unit] = {code: Unit(code) for code in units}
        self.counts: Counter = Counter()
        self.stopping = threading.Event()

    # --- the portal's instructions ---------------------------------------------------------

    def on_message(self, message_type: str, data: dict) -> None:
        """A message the portal delivered to the WCS."""
        task_id, seq, code = data.get("task_id"), data.get("instruction_seq"), data.get("equipment", "")
        if task_id is None or not code:
            return
        task_id = int(task_id)
        with self.lock:
            unit = self.units.setdefault(code, Unit(code))
            if message_type.endswith("instruction_cancel"):
                self.counts["cancels"] += 1
                if unit.jobs.get(task_id) == seq:
                    del unit.jobs[task_id]
                return
            self.counts["instructions"] += 1
            if not unit.can_work:
                self.counts["dropped"] += 1  # lost on the way: the acknowledgement deadline notices
                return
            unit.jobs[task_id] = seq
        self.later(0.05, lambda: self._acknowledge(code, task_id, seq))
        pause = self.work_seconds * (0.5 + self.rng.random())
        self.later(pause / 2, lambda: self._step(code, task_id, seq, "started", data))
        self.later(pause, lambda: self._step(code, task_id, seq, "done", data))

    def _acknowledge(self, code: str, task_id: int, seq) -> None:
        with self.lock:
            if self.units[code].jobs.get(task_id) != seq or not self.units[code].can_work:
                return
        self.send("wcs.task.acknowledged", {"task_id": task_id, "instruction_seq": seq, "equipment": code})
        self.counts["acknowledged"] += 1

    def _step(self, code: str, task_id: int, seq, step: str, data: dict) -> None:
        with self.lock:
            unit = self.units[code]
            if unit.jobs.get(task_id) != seq:
                return  # cancelled or re-placed meanwhile
            if not unit.can_work:
                self.later(self.work_seconds, lambda: self._step(code, task_id, seq, step, data))
                return  # stopped with the work on board; it goes on once cleared (or the portal re-routes it)
            if step == "done":
                del unit.jobs[task_id]
        payload = {"task_id": task_id, "instruction_seq": seq, "equipment": code}
        if step == "started":
            self.send("wcs.task.started", payload)
            return
        quantity = int(data.get("quantity") or 1)
        if quantity > 1 and self.rng.random() < self.short_rate:
            self.send("wcs.task.short", {**payload, "done_quantity": quantity - 1})
            self.counts["short"] += 1
        else:
            self.send("wcs.task.completed", {**payload, "done_quantity": quantity})
            self.counts["completed"] += 1

    # --- faults and heartbeats ---------------------------------------------------------------

    def control(self, data: dict) -> dict:
        """Jam, clear, silence or resume units (lists of codes); returns the floor's state."""
        events = []
        with self.lock:
            for code in data.get("units", []):
                self.units.setdefault(code, Unit(code))
            for code in data.get("jam", []):
                unit = self.units.setdefault(code, Unit(code))
                unit.jammed = True
                self.counts["jams"] += 1
                events.append(("wcs.equipment.jam", {"equipment": code, "code": "E-JAM", "message": "Tote jammed"}))
            for code in data.get("clear", []):
                unit = self.units.setdefault(code, Unit(code))
                if unit.jammed:
                    unit.jammed = False
                    events.append(("wcs.equipment.cleared", {"equipment": code}))
            for code in data.get("silence", []):
                self.units.setdefault(code, Unit(code)).silent = True
                self.counts["silenced"] += 1
            for code in data.get("resume", []):
                self.units.setdefault(code, Unit(code)).silent = False
        for event_type, payload in events:  # reported from the agenda: the control call answers at once
            self.later(0, lambda event_type=event_type, payload=payload: self.send(event_type, payload))
        return self.stats()

    def heartbeat(self) -> None:
        with self.lock:
            beats = [(u.code, "faulted" if u.jammed else "online") for u in self.units.values() if not u.silent]
        for code, status in beats:  # not retried: the next beat is on its way
            self.send("wcs.heartbeat", {"equipment": code, "status": status}, attempts=1)

    def run_heartbeats(self) -> None:
        while not self.stopping.wait(self.heartbeat_seconds):
            try:
                self.heartbeat()
            except Exception as error:  # a missed beat is what the portal's monitor is for
                logger.warning("heartbeat not sent: %s", error)

    def start(self) -> None:
        threading.Thread(target=self.run_heartbeats, name="wcs-heartbeats", daemon=True).start()

    def stats(self) -> dict:
        with self.lock:
            return {
                "counts": dict(self.counts),
                "units": {
                    code: {"jammed": u.jammed, "silent": u.silent, "jobs": len(u.jobs)}
                    for code, u in self.units.items()
                },
            }
