"""RateLimiter: requests per second per app key, shared by every client in the process.

KIS allows 20 requests per second per app key on real accounts and answers EGW00201 beyond
that. Requests are spaced evenly, so a burst never exceeds the limit in any one-second window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_RATE = 18.0  # 20/s is the service's limit; keep headroom for clock jitter


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def for_app_key(app_key: str, rate: float = DEFAULT_RATE) -> RateLimiter:
    """The process-wide limiter of an app key (created with `rate` on first use)."""
    with _shared_lock:
        limiter = _shared.get(app_key)
        if limiter is None or abs(limiter.interval - 1.0 / rate) > 1e-12:
            limiter = _shared[app_key] = RateLimiter(rate)
        return limiter
