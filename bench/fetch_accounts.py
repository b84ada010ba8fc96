"""Fetching N accounts on one app key against a simulator that enforces 20 requests/s.

The floor is N/20 s: no client can go faster without being refused (EGW00201).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.kis.client import Credentials, KisClient
from pipelines.kis.protocol import Account
from pipelines.kis.ratelimit import DEFAULT_RATE, RateLimiter
from pipelines.kis.tokens import TokenCache
from pipelines.simulator.server import Simulator

SERVER_LIMIT = 20.0


@dataclass
class FetchResult:
    accounts: int
    runs: list[float]
    refusals: int

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def floor(self) -> float:
        return self.accounts / SERVER_LIMIT


def measure(accounts: int, repeats: int = 3) -> FetchResult:
    runs: list[float] = []
    refusals = 0
    with tempfile.TemporaryDirectory() as tmp, Simulator(rate_limit=SERVER_LIMIT) as sim:
        cache = TokenCache(Path(tmp))
        for _ in range(repeats):
            time.sleep(1.0)  # let the server's one-second window drain between runs
            client = KisClient(
                sim.base_url,
                Credentials("BENCH-KEY", "BENCH-SECRET"),
                token_cache=cache,
                rate_limiter=RateLimiter(DEFAULT_RATE),
            )
            client.access_token()
            started = time.perf_counter()
            for n in range(accounts):
                client.inquire_account_balance(Account(f"5{n:07d}", "01"))
            runs.append(time.perf_counter() - started)
            refusals += client.events["retries_EGW00201"]
        assert sim.requests["rate_limited"] == refusals
    return FetchResult(accounts, runs, refusals)


def rows(sizes: tuple[int, ...] = (1, 10, 60, 200)) -> list[list[str]]:
    table = []
    for size in sizes:
        result = measure(size)
        table.append(
            [
                f"fetch {size} accounts, one key, server limit 20/s",
                f"{result.median:.2f} s",
                f"{result.floor:.2f} s (N/20)",
                f"{result.median / result.floor:.2f}×",
                str(result.refusals),
            ]
        )
    return table
