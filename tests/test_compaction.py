"""Compacted months: the views read one file per closed month and answer exactly as the daily
files do, and a changed day is never hidden behind a stale compacted file."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.kis.protocol import Account
from pipelines.lake import account_totals
from pipelines.lake.compaction import SOURCES_KEY, CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.tidy import flatten
from pipelines.warehouse import warehouse
from tests.test_storage import snapshot

ACCOUNTS = (Account.parse("12345678-01"), Account.parse("12345678-21"))
# April 28 to June 3, 2024: April and May are closed on TODAY, June is open.
DAYS = [date(2024, 4, 28) + timedelta(days=n) for n in range(37)]
TODAY = date(2024, 6, 4)
APRIL, MAY, JUNE = date(2024, 4, 1), date(2024, 5, 1), date(2024, 6, 1)
QUERIES = [
    *(f"SELECT * FROM {view} ORDER BY ALL" for view in warehouse.view_names()),
    "SELECT * FROM asset_categories WHERE snapshot_date = DATE '2024-05-31' ORDER BY ALL",
]


def write_day(data_root: Path, day: date, accounts: tuple[Account, ...] = ACCOUNTS) -> None:
    snapshots = [snapshot(account, day) for account in accounts]
    tables = ParquetTables(data_root)
    tables.write("asset_categories", day, flatten.asset_categories(snapshots))
    tables.write("account_summary", day, flatten.account_summary(snapshots))


def answers(data_root: Path) -> list[list[tuple[object, ...]]]:
    with duckdb.connect(str(warehouse.build(data_root)), read_only=True) as con:
        return [con.execute(sql).fetchall() for sql in QUERIES]


def base_view_sql(data_root: Path, view: str) -> str:
    with duckdb.connect(str(data_root / warehouse.FILE_NAME), read_only=True) as con:
        [(sql,)] = con.execute(
            "SELECT sql FROM duckdb_views() WHERE view_name = ?", [view]
        ).fetchall()
    return str(sql)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    for day in DAYS:
        write_day(tmp_path, day)
    return tmp_path


def test_closed_months_are_compacted_and_the_views_answer_the_same(history: Path) -> None:
    daily_only = answers(history)
    written = CompactedMonths(history).refresh(TODAY)
    compacted = CompactedMonths(history)
    assert sorted(p.relative_to(history).as_posix() for p in written) == [
        "compacted/account_summary/2024-04.parquet",
        "compacted/account_summary/2024-05.parquet",
        "compacted/asset_categories/2024-04.parquet",
        "compacted/asset_categories/2024-05.parquet",
    ]
    files = compacted.files("asset_categories")
    assert files.compacted == [compacted.path("asset_categories", m) for m in (APRIL, MAY)]
    assert files.daily_months == [JUNE]
    assert answers(history) == daily_only
    sql = base_view_sql(history, "asset_categories")
    assert "2024-05.parquet" in sql and "snapshot_date=2024-06-" in sql
    assert "snapshot_date=2024-05-" not in sql
    assert CompactedMonths(history).refresh(TODAY) == []  # nothing changed: nothing rewritten


def test_a_compacted_month_holds_every_row_of_its_days_sorted(history: Path) -> None:
    compacted = CompactedMonths(history)
    compacted.refresh(TODAY)
    table = pq.read_table(compacted.path("asset_categories", MAY))
    days = table.column("snapshot_date").to_pylist()
    assert days == sorted(days) and set(days) == {d for d in DAYS if d.month == 5}
    assert table.num_rows == 31 * (20 + 17)
    assert SOURCES_KEY in (table.schema.metadata or {})


def test_a_rewritten_day_is_read_from_its_daily_file_until_compacted_again(history: Path) -> None:
    compacted = CompactedMonths(history)
    compacted.refresh(TODAY)
    before = answers(history)
    write_day(history, date(2024, 5, 15), ACCOUNTS[:1])  # the day re-run with one account
    expected_rows = 31 * (20 + 17) - 17
    assert compacted.files("asset_categories").daily_months == [MAY, JUNE]
    after = answers(history)
    assert after != before
    with duckdb.connect(str(history / warehouse.FILE_NAME), read_only=True) as con:
        count = "SELECT count(*) FROM asset_categories WHERE month(snapshot_date) = 5"
        assert con.execute(count).fetchone() == (expected_rows,)
    assert [p.stem for p in compacted.refresh(TODAY)] == ["2024-05", "2024-05"]
    assert compacted.files("asset_categories").daily_months == [JUNE]
    assert answers(history) == after


def test_account_summary_months_carry_the_totals_of_their_output1_rows(history: Path) -> None:
    """A compacted account_summary month holds each row's totals from output1 (what
    net_asset_history reads): a rewritten asset_categories day alone makes it stale, and the
    views read that month by day until it is compacted again."""
    compacted = CompactedMonths(history)
    compacted.refresh(TODAY)
    stored = pq.read_table(compacted.path("account_summary", MAY))
    assert stored.schema.names[-len(account_totals.COLUMNS) :] == account_totals.COLUMNS.names
    assert stored.column("net_assets").null_count == 0
    day, dropped = date(2024, 5, 15), ACCOUNTS[1]
    categories = flatten.asset_categories([snapshot(ACCOUNTS[0], day)])
    ParquetTables(history).write("asset_categories", day, categories)  # output1 of one account
    assert compacted.files("account_summary").daily_months == [MAY, JUNE]
    net = (
        "SELECT net_assets FROM net_asset_history "
        f"WHERE snapshot_date = DATE '{day}' AND account_id = '{dropped.id}'"
    )
    with duckdb.connect(str(warehouse.build(history)), read_only=True) as con:
        assert con.execute(net).fetchone() == (None,)
    assert sorted(p.parent.name for p in compacted.refresh(TODAY)) == [
        "account_summary",
        "asset_categories",
    ]
    assert compacted.files("account_summary").daily_months == [JUNE]
    with duckdb.connect(str(warehouse.build(history)), read_only=True) as con:
        assert con.execute(net).fetchone() == (None,)


def test_a_month_compacted_before_the_totals_is_compacted_again(history: Path) -> None:
    """An account_summary month compacted by an older version (no totals; its own days in the
    record) is not read; the next refresh writes it with the totals."""
    compacted = CompactedMonths(history)
    days = compacted.sources("account_summary")[MAY]
    old_record = json.dumps([[d.isoformat(), *fingerprint] for d, fingerprint in days.items()])
    rows = pa.concat_tables(
        ParquetTables(history)
        .read("account_summary", d)
        .add_column(0, "snapshot_date", pa.array([d] * len(ACCOUNTS), pa.date32()))
        for d in days
    )
    path = compacted.path("account_summary", MAY)
    path.parent.mkdir(parents=True)
    pq.write_table(rows.replace_schema_metadata({SOURCES_KEY: old_record.encode()}), path)
    assert MAY in compacted.files("account_summary").daily_months
    assert compacted.path("account_summary", MAY) in compacted.refresh(TODAY)
    assert MAY not in compacted.files("account_summary").daily_months
    assert pq.read_schema(path).names[-1] == account_totals.COLUMNS.names[-1]


def test_a_removed_day_leaves_the_views_at_once(history: Path) -> None:
    compacted = CompactedMonths(history)
    compacted.refresh(TODAY)
    day_file = ParquetTables(history).path("account_summary", date(2024, 4, 30))
    day_file.unlink()
    assert compacted.files("account_summary").daily_months == [APRIL, JUNE]
    with duckdb.connect(str(warehouse.build(history)), read_only=True) as con:
        days = con.execute("SELECT DISTINCT snapshot_date FROM account_summary").fetchall()
    assert (date(2024, 4, 30),) not in days and (date(2024, 4, 29),) in days


def test_a_touched_file_with_the_same_bytes_is_not_trusted(history: Path) -> None:
    compacted = CompactedMonths(history)
    compacted.refresh(TODAY)
    day_file = ParquetTables(history).path("asset_categories", date(2024, 5, 2))
    stat = day_file.stat()
    os.utime(day_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert compacted.files("asset_categories").daily_months == [MAY, JUNE]


def test_a_month_without_daily_files_loses_its_compacted_file(history: Path) -> None:
    compacted = CompactedMonths(history)
    compacted.refresh(TODAY)
    for table in ("asset_categories", "account_summary"):
        for day in (d for d in DAYS if d.month == 4):
            ParquetTables(history).path(table, day).unlink()
    compacted.refresh(TODAY)
    assert not compacted.path("asset_categories", APRIL).exists()
    assert compacted.path("asset_categories", MAY).exists()


def test_the_month_of_today_is_never_compacted(history: Path) -> None:
    assert CompactedMonths(history).refresh(date(2024, 5, 31))[0].stem == "2024-04"
    assert not CompactedMonths(history).path("account_summary", MAY).exists()


def test_the_reports_account_rows_match_net_asset_history_on_every_day(tmp_path: Path) -> None:
    """day_summary.ACCOUNTS_ON_DAY reads one day and each account's previous snapshot instead of the
    view's windows over all history; it must give the view's rows exactly."""
    from pipelines.reporting import day_summary

    standard, product21 = ACCOUNTS
    plan = {
        date(2024, 5, 2): ACCOUNTS,
        date(2024, 5, 3): (standard,),
        date(2024, 5, 6): ACCOUNTS,
        date(2024, 5, 13): (product21,),
        date(2024, 6, 3): ACCOUNTS,
    }
    for day, accounts in plan.items():
        write_day(tmp_path, day, accounts)
    CompactedMonths(tmp_path).refresh(date(2024, 6, 4))
    columns = (
        "account_id, product_code, net_assets, total_assets, securities_value, cash, loans, "
        "purchase_amount, unrealized_pnl, previous_snapshot_date, days_since_previous, "
        "net_assets_change"
    )
    with duckdb.connect(str(warehouse.build(tmp_path)), read_only=True) as con:
        for day in [*plan, date(2024, 5, 4)]:
            ours = con.execute(warehouse.on_day(day_summary.ACCOUNTS_ON_DAY, day)).fetchall()
            view = con.execute(
                warehouse.on_day(
                    f"SELECT {columns} FROM net_asset_history WHERE snapshot_date = ? "
                    "ORDER BY account_id",
                    day,
                )
            ).fetchall()
            assert ours == view, day
            assert len(ours) == (len(plan[day]) if day in plan else 0)


def test_a_report_draws_the_last_year_whatever_the_history(tmp_path: Path) -> None:
    """History older than the chart's year changes nothing on the page: its size and the
    memory to draw it do not grow with history."""
    from pipelines.reporting import report

    last = date(2024, 6, 3)
    long_ago = [last - timedelta(days=7 * n) for n in range(104, 0, -1)]  # two years, weekly
    recent = [*(d for d in long_ago if (last - d).days < report.NET_ASSETS_DAYS), last]
    pages = []
    for name, days in (("long", [*long_ago, last]), ("recent", recent)):
        root = tmp_path / name
        for day in days:
            write_day(root, day)
        CompactedMonths(root).refresh(last)
        with duckdb.connect(str(warehouse.build(root)), read_only=True) as con:
            pages.append(report.render_report(con, last))
    assert len(recent) < 60 and pages[0] == pages[1]
