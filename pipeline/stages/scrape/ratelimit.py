"""Per-host politeness: a spaced-slot token bucket with jitter, pauses and slow-down.

All workers of a host share one :class:`HostLimiter`, so politeness is global
to the host whatever the concurrency. Slots are spaced ``1/rate`` apart on
average (jitter is mean-preserving, so the achieved rate stays at the target);
a ``429``'s Retry-After pauses every worker, not only the one that got it.
"""

from __future__ import annotations

import asyncio
import random
import time


class HostLimiter:
    """Hands out request slots for one host.

    Args:
        rate: Requests per second.
        jitter: Each gap is ``1/rate`` times uniform(1 - jitter, 1 + jitter).
        seed: Seed of the jitter.
    """

    def __init__(self, rate: float, jitter: float = 0.1, seed: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.jitter = jitter
        self.rng = random.Random(seed)
        self.next_at = 0.0
        self.pause_until = 0.0
        self.lock = asyncio.Lock()
        self.waited = 0.0
        self.slowdowns = 0

    @property
    def rate(self) -> float:
        return 1.0 / self.interval

    async def acquire(self) -> None:
        """Wait for the next slot (re-waits if a pause starts meanwhile)."""
        while True:
            async with self.lock:
                now = time.monotonic()
                at = max(now, self.next_at, self.pause_until)
                gap = self.interval * self.rng.uniform(1 - self.jitter, 1 + self.jitter)
                self.next_at = at + gap
            if at > now:
                self.waited += at - now
                await asyncio.sleep(at - now)
            if time.monotonic() >= self.pause_until - 1e-3:
                return

    def pause(self, seconds: float) -> None:
        """No slot is handed out for ``seconds`` (Retry-After)."""
        until = time.monotonic() + seconds
        self.pause_until = max(self.pause_until, until)
        self.next_at = max(self.next_at, self.pause_until)

    def slow_down(self, factor: float = 1.25, floor_rate: float = 0.05) -> None:
        """Lower the rate after the host pushed back (additive-increase is not needed:
        the start rate already comes from its robots.txt)."""
        self.interval = min(self.interval * factor, 1.0 / floor_rate)
        self.slowdowns += 1
