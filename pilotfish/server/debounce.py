"""A burst of changes becomes one push: wait for `quiet` without news, but never more than
`max_wait` after the first change (so a steady trickle still gets through)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Debouncer:
    quiet: float = 0.1
    max_wait: float = 1.0
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _count: int = 0

    def notify(self, count: int = 1) -> None:
        """Something changed (callable from any coroutine on this loop)."""
        self._count += count
        self._event.set()

    async def next_batch(self) -> int:
        """Wait for a change, then for the burst to end; return how many changes it held."""
        await self._event.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            self._event.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._event.wait(), timeout=min(self.quiet, remaining))
            except TimeoutError:
                break  # quiet long enough
        count, self._count = self._count, 0
        return count
