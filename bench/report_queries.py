"""Reporting queries over years of history × many accounts, against one compacted Parquet file.

Setup (not measured): 100 accounts (product codes 01 and 21 alternating) flattened by
pipelines.tidy.flatten from simulated Snapshots of ONE day; that day's two tables are
re-used for every one of BENCH_QUERY_DAYS consecutive calendar days (default 1826, 5 years)
with fetched_at changed to that day, and written with ParquetTables.write (one file per table
per day, as the pipeline writes them); then CompactedMonths.refresh (every month is closed) and
warehouse.build, as a run does. Values therefore repeat from day to day, which compresses
better than real history would; row counts and file counts are real.

Measured, on the warehouse (a file holding views over the compacted months):
  * cold: a new read-only connection, its first query (median over new connections; the OS
    page cache is warm, so "cold" means a cold DuckDB, not a cold disk);
  * warm: the median of 5 repeats on that same connection.
Each query's whole result is fetched as an Arrow table (exact decimal128, as a DuckDB or Arrow
client receives it); fetchall() into Python Decimal objects is reported apart for the largest
result, since it is Python object creation rather than query work.
Baseline, side by side: every row of each table in one Parquet file, written as a compacted
month is (pyarrow, same sort and compression), and an in-memory DuckDB connection with the same
macro, category_labels table and view SQL as warehouse.build, except that the two base views
read that one file; the same query text is then run on both.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import env_int, median, seconds, verdict
from bench.flatten_speed import snapshots_for
from pipelines.ingest import provenance
from pipelines.kis.protocol import Account
from pipelines.lake import account_totals, compaction, schema
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.tidy import flatten
from pipelines.warehouse import warehouse
from pipelines.warehouse.views import ACCOUNT_DAYS, DERIVED_VIEWS, with_sources

TARGET_WARM = 0.100
TARGET_RATIO = 5.0
FIRST_DAY = date(2021, 1, 1)
ACCOUNT = "70000000-01"
NET_ASSETS = "`SELECT * FROM net_asset_history` (fetch all)"


def write_history(
    data_root: Path, day_count: int, account_count: int, first_day: date = FIRST_DAY
) -> int:
    account_list = [Account(f"7{n:07d}", "21" if n % 2 else "01") for n in range(account_count)]
    template = snapshots_for(account_list, first_day)
    tables = {
        "asset_categories": flatten.asset_categories(template),
        "account_summary": flatten.account_summary(template),
    }
    store = ParquetTables(data_root)
    files = 0
    for n in range(day_count):
        day = first_day + timedelta(days=n)
        fetched = datetime(day.year, day.month, day.day, 7, 30, tzinfo=UTC)
        for name, table in tables.items():
            index = table.schema.get_field_index("fetched_at")
            column = pa.array([fetched] * table.num_rows, type=schema.FETCHED_AT)
            store.write(name, day, table.set_column(index, table.schema.field(index), column))
            files += 1
    return files


def one_file(data_root: Path, target: Path) -> dict[str, Path]:
    """Each table's days in one file sorted as a compacted month (account_summary with its
    totals from output1, as compaction stores them)."""
    tables = ParquetTables(data_root.resolve())
    paths = {}
    with duckdb.connect() as con:
        whole = {}
        for name in warehouse.TABLE_COMMENTS:
            columns = ", ".join([schema.PARTITION_COLUMN, *schema.TABLES[name].names])
            whole[name] = con.execute(
                f"SELECT {columns} FROM read_parquet('{tables.glob(name)}', hive_partitioning = "
                f"true, hive_types = {{'{schema.PARTITION_COLUMN}': DATE}})"
            ).to_arrow_table()
        for name, rows in whole.items():
            if name in compaction.TOTALS:
                rows = account_totals.attach(rows, whole[compaction.TOTALS[name]])
            paths[name] = target / f"{name}.parquet"
            pq.write_table(
                rows.sort_by(compaction.SORT_KEYS), paths[name], compression=compaction.COMPRESSION
            )
    return paths


def baseline_connection(files: dict[str, Path]) -> duckdb.DuckDBPyConnection:
    """In memory: warehouse.build's SQL with each base view reading one compacted file."""
    con = duckdb.connect()
    con.execute(warehouse.PERCENT_MACRO)
    con.execute(warehouse._category_labels_sql())
    warehouse._create_capture_tables(con, None)  # missed_captures reads them
    warehouse._create_data_source(con, provenance.RootKind(provenance.SIMULATED))  # is_simulated
    for name, path in files.items():
        columns = ", ".join([schema.PARTITION_COLUMN, *schema.TABLES[name].names])
        base = f"SELECT {columns} FROM read_parquet('{path}')"
        if name == "asset_categories":
            base = (
                f"SELECT t.*, l.asset_class FROM ({base}) t "
                "LEFT JOIN category_labels l USING (layout, category_seq)"
            )
        con.execute(f"CREATE VIEW {name} AS {base}")
    sources = {ACCOUNT_DAYS: f"SELECT * FROM read_parquet('{files['account_summary']}')"}
    for name, (_, sql) in DERIVED_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {with_sources(sql, sources)}")
    return con


def queries(one_day: date) -> dict[str, tuple[str, list[object]]]:
    return {
        NET_ASSETS: ("SELECT * FROM net_asset_history", []),
        "`allocation_history`: asset-class weights per day, one account": (
            "SELECT snapshot_date, asset_class, any_value(asset_class_weight_pct) AS weight_pct "
            "FROM allocation_history WHERE account_id = ? GROUP BY ALL "
            "ORDER BY snapshot_date, weight_pct DESC",
            [ACCOUNT],
        ),
        "`FROM asset_categories WHERE snapshot_date = ?` (one day)": (
            "FROM asset_categories WHERE snapshot_date = ?",
            [one_day],
        ),
    }


def timed(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> tuple[float, int]:
    started = time.perf_counter()
    result = con.execute(sql, params).to_arrow_table()
    return time.perf_counter() - started, result.num_rows


def fetchall_seconds(db: Path, sql: str) -> float:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(sql).fetchall()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - started)
    return median(times)


def cold_and_warm(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    sql: str,
    params: list[object],
    colds: int,
    warms: int,
) -> tuple[float, float, int]:
    cold_times, warm_times, count = [], [], 0
    for attempt in range(colds):
        con = connect()
        try:
            elapsed, count = timed(con, sql, params)
            cold_times.append(elapsed)
            if attempt == 0:
                warm_times = [timed(con, sql, params)[0] for _ in range(warms)]
        finally:
            con.close()
    return median(cold_times), median(warm_times), count


def rows() -> list[list[str]]:
    day_count = env_int("BENCH_QUERY_DAYS", 1826, 365)
    account_count = env_int("BENCH_QUERY_ACCOUNTS", 100, 100)
    colds, warms = env_int("BENCH_QUERY_COLD_RUNS", 3, 3), 5
    table_rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
        data_root = Path(tmp) / "data"
        started = time.perf_counter()
        files = write_history(data_root, day_count, account_count)
        compacting = time.perf_counter()
        every_month_closed = FIRST_DAY + timedelta(days=day_count + 31)
        months = len(CompactedMonths(data_root).refresh(every_month_closed))
        compacting = time.perf_counter() - compacting
        db = warehouse.build(data_root)
        one = one_file(data_root, Path(tmp))
        setup = time.perf_counter() - started
        one_day = FIRST_DAY + timedelta(days=day_count // 2)
        for label, (sql, params) in queries(one_day).items():
            ours = cold_and_warm(
                lambda: duckdb.connect(str(db), read_only=True), sql, params, colds, warms
            )
            base = cold_and_warm(lambda: baseline_connection(one), sql, params, colds, warms)
            assert ours[2] == base[2], (label, ours[2], base[2])
            for kind, mine, theirs in (("warm", ours[1], base[1]), ("cold", ours[0], base[0])):
                ratio = mine / theirs
                ok = ratio <= TARGET_RATIO and (kind == "cold" or mine < TARGET_WARM)
                target = f"≤ {TARGET_RATIO:.0f}× one file"
                if kind == "warm":
                    target = f"< 100 ms and {target}"
                runs = (
                    f"median of {warms} on one connection"
                    if kind == "warm"
                    else (f"first query of a new connection, median of {colds}")
                )
                table_rows.append(
                    [
                        f"{label}, {kind}",
                        seconds(mine),
                        f"{seconds(theirs)} (one compacted Parquet file)",
                        f"{ratio:.1f}×",
                        f"{target}: {verdict(ok)}",
                        f"{runs}; {ours[2]:,} rows returned",
                    ]
                )
        python_objects = fetchall_seconds(db, queries(one_day)[NET_ASSETS][0])
    size = (
        f"{day_count} days × {account_count} accounts: {files:,} daily Parquet files, read as "
        f"{months} compacted month files (compacting them took {compacting:.1f} s); setup (not "
        f"measured) {setup:.0f} s; the same result through fetchall() into Python Decimals: "
        f"{seconds(python_objects)}"
    )
    table_rows[0][-1] += f"; {size}"
    return table_rows
