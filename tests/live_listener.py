"""Listen to a live group from a synchronous test: one event loop in a thread holds the subscription
(the pub/sub channel layer keeps one per loop) and collects what arrives."""

from __future__ import annotations

import asyncio
import queue
import threading

from channels.layers import get_channel_layer


class GroupListener:
    """``with GroupListener("role.warehouse_supervisor") as live: …; live.next(timeout=5)``."""

    def __init__(self, group: str):
        self.group = group
        self.messages: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GroupListener:
        self.thread.start()
        if not self.ready.wait(timeout=10):
            raise RuntimeError(f"could not subscribe to {self.group}")
        return self

    def __exit__(self, *exc) -> None:
        self.stopping = True
        self.thread.join(timeout=10)

    def next(self, timeout: float = 5.0) -> dict:
        return self.messages.get(timeout=timeout)

    def _run(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(self.group, channel)
        self.ready.set()
        try:
            while not self.stopping:
                try:
                    self.messages.put(await asyncio.wait_for(layer.receive(channel), timeout=0.2))
                except TimeoutError:
                    continue
        finally:
            await layer.group_discard(self.group, channel)
            await layer.flush()  # close this loop's connections before the loop ends
