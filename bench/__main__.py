"""Run every benchmark and write BENCHMARKS.md (`make bench`).

Modules: fetch_accounts (client pacing), fetch_keys (many app keys side by side),
materialize_cli (one day from the shell),
flatten_speed (snapshots/s), rebuild_history (years of raw JSON rebuilt), report_queries
(DuckDB views over years of Parquet). Each measurement is a median of several runs with its
floor or baseline measured side by side in the same run; targets are reported PASS/FAIL.

Environment variables (all optional):

  BENCH_QUICK=1               smaller sizes everywhere (defaults in brackets below are
                              "full / quick"); the table says which sizes were used
  BENCH_ONLY=a,b              run only these modules (fetch, keys, cli, scale, roots,
                              flatten, rebuild, queries)
  BENCH_KEYS_RUNS             runs of each many-keys measurement [3 / 1]
  BENCH_KEYS_MANY             keys of the largest many-keys measurement [50 / 20]
  BENCH_SCALE_KEYS            app keys × 40 accounts of the one-day-at-scale run [25 / 5]
  BENCH_SCALE_RUNS            measured runs after the warm-up [2 / 1]
  BENCH_ROOTS_RUNS            one-day runs per data root after the warm-up [3 / 2]
  BENCH_ROOTS_DAYS            days of 20 accounts' history for the local vs s3:// queries [365 / 60]
  BENCH_CLI_RUNS              measured runs after the warm-up, per command [3 / 2]
  BENCH_CLI_HISTORY_DAYS      days of 100 accounts' history under the one-day run [1826 / 365]
  BENCH_FLATTEN_SNAPSHOTS     snapshots flattened per run [2000 / 500]
  BENCH_FLATTEN_RUNS          runs of each side [5 / 3]
  BENCH_REBUILD_DAYS          calendar days of raw history [1095 / 120]
  BENCH_REBUILD_ACCOUNTS      accounts [10 / 10]
  BENCH_REBUILD_RUNS          fresh subprocesses per side [3 / 2]
  BENCH_QUERY_DAYS            calendar days of Parquet history [1826 / 365]
  BENCH_QUERY_ACCOUNTS        accounts [100 / 100]
  BENCH_QUERY_COLD_RUNS       new connections per query for the cold figure [3 / 3]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    common,
    day_at_scale,
    fetch_accounts,
    fetch_keys,
    flatten_speed,
    materialize_cli,
    rebuild_history,
    report_queries,
    storage_roots,
)

HEADER = ["measurement", "median of 3", "floor", "ratio", "EGW00201 refusals"]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, "
        f"Python {platform.python_version()}"
    )


SECTIONS: list[tuple[str, str, str, Callable[[], list[list[str]]]]] = [
    (
        "keys",
        "Many app keys side by side",
        "`fetch.fetch_and_land` (client, pacing, landing) with K app keys × 40 accounts "
        "against the simulator in its own process (20 requests/s per key), tokens cached, "
        "against one key's time in the same run and against the machine's own ceiling: the "
        "same requests from a bare thread pool of `requests` calls, one thread per key. See "
        "bench/fetch_keys.py.",
        fetch_keys.rows,
    ),
    (
        "cli",
        "One day's full materialization from the shell",
        "`dagster asset materialize --select '*'` for today's partition (Asia/Seoul) in a "
        "subprocess with a temporary KIS_DATA_ROOT, XDG_CACHE_HOME and DAGSTER_HOME and no "
        "KIS_* credentials (simulator, 2 accounts), against the same command on a one-asset "
        "no-op module (bench/floor_definitions.py: the framework floor) and `python -c pass` "
        "(the absolute floor). See bench/materialize_cli.py.",
        materialize_cli.rows,
    ),
    (
        "scale",
        "One day for 1,000 accounts",
        "`dagster asset materialize --select '*'` for today with 25 app keys × 40 accounts "
        "fetched side by side from the simulator in its own process, against the same run for "
        "one account. See bench/day_at_scale.py.",
        day_at_scale.rows,
    ),
    (
        "roots",
        "A local data root against an s3:// one",
        "The same one-day run and reporting queries on a local data root and on an s3:// root "
        "(moto's S3 server on loopback). See bench/storage_roots.py.",
        storage_roots.rows,
    ),
    (
        "flatten",
        "Flattening snapshots",
        "`flatten.asset_categories` + `flatten.account_summary` on in-memory Snapshots from "
        "`simulated_portfolio.balance_body`, against the naive pandas approach on the same "
        "snapshots. See bench/flatten_speed.py.",
        flatten_speed.rows,
    ),
    (
        "rebuild",
        "Rebuilding years of history from raw JSON",
        "`tidy.build_days` over every day plus `warehouse.build`, in one fresh subprocess, on "
        "raw files landed with `RawLanding.land` (landing is setup, not measured). Baseline: a "
        "subprocess that only reads and parses the same raw files. See "
        "bench/rebuild_history.py.",
        rebuild_history.rows,
    ),
    (
        "queries",
        "Reporting queries over years × many accounts",
        "The warehouse's views (over the compacted months of the daily Parquet files), against "
        "the same SQL over one Parquet file per table holding every row. Synthetic history: "
        "one day's 100-account tables re-used for every day with fetched_at changed. See "
        "bench/report_queries.py.",
        report_queries.rows,
    ),
]


def main() -> int:
    began = time.perf_counter()
    only = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
    mode = "quick (BENCH_QUICK=1)" if common.quick() else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {mode} sizes.",
        f"Machine: {machine()}.",
        "",
    ]
    if not only or "fetch" in only:
        started = time.perf_counter()
        table = fetch_accounts.rows()
        lines += [
            "## Fetching many accounts on one app key",
            "",
            "Against the simulator enforcing KIS's 20 requests per second per app key; the "
            "client paces itself at 18/s (`KIS_RATE_LIMIT`), so it is never refused. "
            "Floor: N/20 s.",
            "",
            *common.table(table, HEADER),
            "",
            f"({time.perf_counter() - started:.0f} s)",
            "",
        ]
    for key, title, intro, measure in SECTIONS:
        if only and key not in only:
            continue
        started = time.perf_counter()
        print(f"bench: {title} ...", file=sys.stderr, flush=True)
        table = measure()
        lines += [
            f"## {title}",
            "",
            intro,
            "",
            *common.table(table),
            "",
            f"({time.perf_counter() - started:.0f} s)",
            "",
        ]
    lines += [f"Total bench runtime: {time.perf_counter() - began:.0f} s.", ""]
    Path("BENCHMARKS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
