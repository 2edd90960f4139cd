"""A burst of changes becomes one push, and a lone change is pushed at once.

Leading edge: the first change after a quiet period (nothing for `quiet` seconds since
the last batch) is a batch of its own, returned at once, so a single edit reaches the
proxies without waiting. Changes that follow it are merged: wait for `quiet` without
news, but never more than `max_wait` after the first of them (a steady trickle still
gets through)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Debouncer:
    quiet: float = 0.1
    max_wait: float = 1.0
    leading: bool = True  # False: every change waits for the burst to end
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _count: int = 0
    _last_batch_at: float | None = None  # loop time the last batch was handed out

    def notify(self, count: int = 1) -> None:
        """Something changed (callable from any coroutine on this loop)."""
        self._count += count
        self._event.set()

    async def next_batch(self) -> int:
        """Wait for a change; return at once if it ends a quiet period, else once the
        burst ends. Returns how many changes the batch holds."""
        await self._event.wait()
        loop = asyncio.get_running_loop()
        if not (self.leading and self._rested(loop.time())):
            await self._until_quiet(loop)
        self._event.clear()
        count, self._count = self._count, 0
        self._last_batch_at = loop.time()
        return count

    def _rested(self, now: float) -> bool:
        return self._last_batch_at is None or now - self._last_batch_at >= self.quiet

    async def _until_quiet(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() + self.max_wait
        while True:
            self._event.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._event.wait(), timeout=min(self.quiet, remaining))
            except TimeoutError:
                return  # quiet long enough
