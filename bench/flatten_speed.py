"""Flattening speed: snapshots per second of flatten.asset_categories + account_summary.

Input: N Snapshot objects built in memory from simulated_portfolio.balance_body (accounts
alternating product codes 01 and 21, i.e. both layouts, over consecutive days). Baseline: the
naive pandas approach on the same snapshots: per snapshot `pd.DataFrame(output1)` then
`pd.to_numeric` on each amount column, and the same for output2 (`pd.DataFrame([output2])`).
Both sides are timed alternately in the same process; each figure is the median of the runs.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from bench.common import env_int, median, verdict
from pipelines.ingest.landing import Snapshot
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.simulator.portfolio import balance_body
from pipelines.tidy import flatten

TARGET_RATIO = 20.0


def snapshots_for(accounts: list[Account], day: date) -> list[Snapshot]:
    """One Snapshot per account for one day, as read_snapshot would return them."""
    fetched_at = datetime(day.year, day.month, day.day, 7, 30, tzinfo=UTC)
    result = []
    for account in accounts:
        body = balance_body(account, day)
        result.append(
            Snapshot(
                account=account,
                snapshot_date=day,
                fetched_at=fetched_at,
                output1=body["output1"],
                output2=body["output2"],
                path=Path(f"/bench/{account.id}/{day}.json"),
            )
        )
    return result


def snapshots(count: int, accounts: int = 20) -> list[Snapshot]:
    """`count` snapshots: `accounts` accounts (01 and 21 alternating) over consecutive days."""
    account_list = [Account(f"5{n:07d}", "21" if n % 2 else "01") for n in range(accounts)]
    result: list[Snapshot] = []
    day = date(2025, 1, 1)
    while len(result) < count:
        result += snapshots_for(account_list, day)[: count - len(result)]
        day += timedelta(days=1)
    return result


def pipeline(snaps: list[Snapshot]) -> int:
    categories = flatten.asset_categories(snaps)
    summary = flatten.account_summary(snaps)
    return categories.num_rows + summary.num_rows


def naive(snaps: list[Snapshot]) -> int:
    rows = 0
    for snap in snaps:
        output1 = pd.DataFrame(snap.output1)
        for name in OUTPUT1_FIELDS:
            output1[name] = pd.to_numeric(output1[name])
        output2 = pd.DataFrame([snap.output2])
        for name in OUTPUT2_FIELDS:
            output2[name] = pd.to_numeric(output2[name])
        rows += len(output1) + len(output2)
    return rows


def rows() -> list[list[str]]:
    count = env_int("BENCH_FLATTEN_SNAPSHOTS", 2000, 500)
    repeats = env_int("BENCH_FLATTEN_RUNS", 5, 3)
    snaps = snapshots(count)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        ours_rows = pipeline(snaps)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        naive_rows = naive(snaps)
        theirs.append(time.perf_counter() - started)
    assert ours_rows == naive_rows, (ours_rows, naive_rows)
    ours_rate, naive_rate = count / median(ours), count / median(theirs)
    ratio = ours_rate / naive_rate
    return [
        [
            f"flatten {count} snapshots (asset_categories + account_summary)",
            f"{ours_rate:,.0f} snapshots/s ({median(ours):.3f} s)",
            f"{naive_rate:,.0f} snapshots/s ({median(theirs):.3f} s): naive per-snapshot "
            "`pd.DataFrame` + `pd.to_numeric`",
            f"{ratio:.2f}× (higher is better)",
            f"≥ {TARGET_RATIO:.0f}× naive: {verdict(ratio >= TARGET_RATIO)}",
            f"median of {repeats}, run alternately in one process; {ours_rows:,} rows out; "
            "ours yields exact DECIMAL(38,8), the naive one int64/float64",
        ]
    ]
