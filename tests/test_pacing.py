"""RateLimiter and Backoff on a fake clock: spacing, sharing, and bounded jittered waits."""

from __future__ import annotations

import random

from pipelines.kis import ratelimit
from pipelines.kis.ratelimit import RateLimiter
from pipelines.kis.retry import Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_are_spaced_so_no_second_holds_more_than_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(60):
        limiter.acquire()
        times.append(clock.now)
    for i in range(len(times) - 20):
        assert times[i + 20] - times[i] >= 1.0 - 1e-9  # any 21 requests span at least 1 s
    assert abs((times[-1] - times[0]) - 59 / 20) < 1e-9  # and no slower than the rate


def test_an_idle_limiter_does_not_bank_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 5  # idle
    assert limiter.acquire() == 0
    assert limiter.acquire() > 0.09


def test_one_limiter_per_app_key_in_the_process() -> None:
    first = ratelimit.for_app_key("pacing-key-A", 18)
    assert ratelimit.for_app_key("pacing-key-A", 18) is first
    assert ratelimit.for_app_key("pacing-key-B", 18) is not first
    assert ratelimit.for_app_key("pacing-key-A", 5).interval == 0.2  # reconfigured


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = Backoff(attempts=6, base=0.5, cap=4.0)
    rng = random.Random(7)
    delays = [[backoff.delay(n, rng) for _ in range(200)] for n in range(6)]
    for n, samples in enumerate(delays):
        ceiling = min(4.0, 0.5 * 2**n)
        assert all(ceiling / 2 <= d <= ceiling for d in samples)
        assert len({round(d, 6) for d in samples}) > 100  # jittered, not fixed
