"""Rebuilding years of history from raw JSON in one run: tidy.build_days + warehouse.build.

Setup (not measured): synthetic raw files landed with RawLanding.land, one per account and day,
bodies from simulated_portfolio.balance_body, for BENCH_REBUILD_DAYS consecutive calendar days
(default 1095, 3 years) × BENCH_REBUILD_ACCOUNTS accounts (default 10, product codes 01 and 21
alternating). Measured: a fresh subprocess running `build_days(data_root, days)` then
`warehouse.build(data_root)`; wall time of the subprocess as seen by the parent, the time of the
two calls inside it, and peak RSS from getrusage(RUSAGE_CHILDREN).ru_maxrss (KB on Linux) taken
in a launcher process whose only child is the worker, so no earlier benchmark's subprocess
(e.g. Dagster's) can leak into the maximum.

Baseline, side by side: the same subprocess that only reads and json-parses every newest raw
file (envelope and page bodies) with the same imports loaded: the I/O and parsing floor any
rebuild from raw JSON pays.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.common import env_int, median, seconds, verdict
from pipelines.ingest.landing import RawLanding
from pipelines.kis.client import BalanceResponse, Page
from pipelines.kis.protocol import Account
from pipelines.simulator.portfolio import balance_body

TARGET_SECONDS = 30.0
TARGET_MB = 400.0
FIRST_DAY = date(2023, 1, 2)


def accounts(count: int) -> list[Account]:
    return [Account(f"6{n:07d}", "21" if n % 2 else "01") for n in range(count)]


def days(count: int) -> list[date]:
    return [FIRST_DAY + timedelta(days=n) for n in range(count)]


def land(data_root: Path, day_list: list[date], account_list: list[Account]) -> int:
    landing = RawLanding(data_root)
    files = 0
    for day in day_list:
        fetched_at = datetime(day.year, day.month, day.day, 7, 30, tzinfo=UTC)
        for account in account_list:
            body = json.dumps(balance_body(account, day), ensure_ascii=False)
            page = Page(status=200, tr_id="CTRP6548R", tr_cont="D", body=body)
            response = BalanceResponse(account=account, fetched_at=fetched_at, pages=(page,))
            landing.land(response, day, source={"bench": "rebuild_history"})
            files += 1
    return files


def _work(mode: str, data_root: Path, first: date, count: int) -> None:
    """In the worker process: run the rebuild (or the floor) and print its inner time."""
    # the same imports in both modes
    from pipelines.tidy import build as tidy
    from pipelines.warehouse import warehouse

    day_list = [first + timedelta(days=n) for n in range(count)]
    started = time.perf_counter()
    if mode == "rebuild":
        result = tidy.build_days(data_root, day_list)
        if result.blocked:
            raise SystemExit(f"blocked: {[o.problems[:3] for o in result.blocked]}")
        warehouse.build(data_root)
        rows = result.rows("asset_categories") + result.rows("account_summary")
    else:
        landing = RawLanding(data_root)
        rows = 0
        for day in day_list:
            for path in landing.latest_files(day):
                envelope = json.loads(path.read_text())
                for page in envelope["pages"]:
                    body = json.loads(page["body"])
                    rows += len(body["output1"]) + 1
    print(json.dumps({"inner": time.perf_counter() - started, "rows": rows}))


def _launch(mode: str, data_root: Path, first: date, count: int) -> None:
    """In the launcher process: run one worker, report its wall time and peak RSS."""
    command = [sys.executable, "-m", "bench.rebuild_history", "work", mode, str(data_root)]
    command += [first.isoformat(), str(count)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["wall"] = wall
    report["max_rss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(report))


def measure(mode: str, data_root: Path, first: date, count: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.rebuild_history", "launch", mode, str(data_root)]
    command += [first.isoformat(), str(count)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rows() -> list[list[str]]:
    day_count = env_int("BENCH_REBUILD_DAYS", 1095, 120)
    account_count = env_int("BENCH_REBUILD_ACCOUNTS", 10, 10)
    repeats = env_int("BENCH_REBUILD_RUNS", 3, 2)
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        data_root = Path(tmp) / "data"
        started = time.perf_counter()
        files = land(data_root, days(day_count), accounts(account_count))
        setup = time.perf_counter() - started
        ours: list[dict[str, float]] = []
        floor: list[dict[str, float]] = []
        for _ in range(repeats):
            floor.append(measure("floor", data_root, FIRST_DAY, day_count))
            ours.append(measure("rebuild", data_root, FIRST_DAY, day_count))
    wall = median([r["wall"] for r in ours])
    inner = median([r["inner"] for r in ours])
    rss_mb = median([r["max_rss_kb"] for r in ours]) / 1024
    floor_wall = median([r["wall"] for r in floor])
    floor_inner = median([r["inner"] for r in floor])
    floor_rss_mb = median([r["max_rss_kb"] for r in floor]) / 1024
    size = f"{day_count} days × {account_count} accounts ({files:,} raw files)"
    note = (
        f"median of {repeats} fresh subprocesses; every calendar day; "
        f"{int(ours[0]['rows']):,} rows; landing the raw files (setup, not measured) took "
        f"{setup:.0f} s"
    )
    return [
        [
            f"rebuild {size}: wall time of the subprocess",
            seconds(wall),
            f"{seconds(floor_wall)} (read + json-parse every raw file, same imports)",
            f"{wall / floor_wall:.1f}×",
            f"< {TARGET_SECONDS:.0f} s: {verdict(wall < TARGET_SECONDS)}",
            f"{note}; inside the process build_days + warehouse.build took {seconds(inner)} "
            f"(floor's reading loop {seconds(floor_inner)})",
        ],
        [
            f"rebuild {size}: peak RSS",
            f"{rss_mb:.0f} MB",
            f"{floor_rss_mb:.0f} MB (same floor process)",
            f"{rss_mb / floor_rss_mb:.1f}×",
            f"< {TARGET_MB:.0f} MB: {verdict(rss_mb < TARGET_MB)}",
            "ru_maxrss of RUSAGE_CHILDREN in a launcher whose only child is the worker",
        ],
    ]


if __name__ == "__main__":
    role, worker_mode, root, first_day, day_total = sys.argv[1:6]
    run = _work if role == "work" else _launch
    run(worker_mode, Path(root), date.fromisoformat(first_day), int(day_total))
