"""Damaged files heal from raw: a cut-short daily file, compacted month or raw answer, each met
by a normal run through Dagster, and `make verify` / `make repair` on a data root with one of
each (real files, truncated with os.truncate; the values compared to what the simulator served).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.lake import parquet
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.settings import Settings
from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.server import Simulator
from pipelines.storage.damage import DamagedFileError
from pipelines.storage.roots import open_root
from pipelines.tidy.build import build_days
from pipelines.warehouse import view_check, warehouse
from tests.runs import failure, failure_text, materialize
from tests.served import ACCOUNTS, assert_all_served, closed_month_days, cut

REPO = Path(__file__).resolve().parent.parent
#: The views a damaged asset_categories file breaks (issue 16), the base view first.
#: The views that read asset_categories, in the order the warehouse creates them (net assets
#: come from its 합계 rows since issue 15).
CATEGORY_VIEWS = [
    "asset_categories",
    "latest_allocation",
    "net_asset_history",
    "allocation_history",
    "pnl_by_category",
    "consolidated_allocation",
    "consolidated_net_assets",
    "net_assets_monthly",
]


def with_a_closed_month() -> tuple[list[date], date]:
    """The last two days of last month (a range run: a closed month, compacted), then today."""
    today = today_in_seoul()
    days = closed_month_days(today)
    run(days)
    run(today)
    return days, today


def run(days: date | list[date]) -> dg.ExecuteInProcessResult:
    result = materialize(days)
    assert result.success, failure_text(result)
    return result


def notes(result: dg.ExecuteInProcessResult) -> str:
    """What the run said about damaged files: the metadata on its assets."""
    texts = []
    for materialization in result.get_asset_materialization_events():
        metadata = materialization.materialization.metadata
        for key in ("damaged_files", "healed_files"):
            if key in metadata:
                texts += metadata[key].value
    return "\n".join(texts)


def assert_every_view_answers(data_root: Path) -> None:
    """Every row of every view is read (an error fails the test), and the views that a damaged
    file of either table broke have rows."""
    with duckdb.connect(str(data_root / warehouse.FILE_NAME), read_only=True) as con:
        names = [
            name
            for (name,) in con.sql(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
            ).fetchall()
        ]
        rows = {name: con.sql(f"FROM {name}").fetchall() for name in names}
    assert all(rows[name] for name in [*CATEGORY_VIEWS, "account_summary"])


# -- failure 1: a daily file cut short ----------------------------------------------------------


def test_a_cut_short_daily_file_is_rebuilt_by_the_next_run_and_every_view_answers(
    isolated_env: Path,
) -> None:
    today = today_in_seoul()
    days = [today - timedelta(days=2), today - timedelta(days=1)]
    for day in days:
        run(day)
    damaged = ParquetTables(isolated_env).path("asset_categories", days[1])
    cut(damaged)

    result = run(today)  # the next day's run: succeeds, and so does every view
    assert f"{damaged} was damaged" in notes(result)
    assert "rebuilt from the raw answers" in notes(result) or "replaced" in notes(result)
    parquet.verify(damaged)
    assert_every_view_answers(isolated_env)
    assert_all_served([*days, today])

    cut(damaged)  # rebuilding that day by hand heals it too, and says so
    result = run(days[1])
    assert f"{damaged} was damaged" in notes(result)
    parquet.verify(damaged)
    assert_all_served([*days, today])


def test_a_view_that_fails_after_a_build_fails_the_build_naming_the_view_and_the_file(
    isolated_env: Path,
) -> None:
    today = today_in_seoul()
    run(today)
    path = ParquetTables(isolated_env).path("asset_categories", today)
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(0).column(10)
    data = bytearray(path.read_bytes())  # a data page zeroed, the footer whole: count(*) works
    start = column.data_page_offset + 8
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with duckdb.connect() as con:
        assert con.sql(f"SELECT count(*) FROM '{path}'").fetchone() == (37,)

    with pytest.raises(view_check.ViewError) as raised:
        warehouse.build(isolated_env)
    assert raised.value.views[: len(CATEGORY_VIEWS)] == CATEGORY_VIEWS
    assert str(path) in str(raised.value)
    assert str(raised.value).startswith("view asset_categories (and latest_allocation, ")


def test_a_build_reads_whole_only_the_files_no_earlier_build_checked(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = today_in_seoul()
    run(today)
    read: list[str] = []
    verify = parquet.verify

    def counted(location: Any) -> None:
        read.append(str(location))
        verify(location)

    monkeypatch.setattr(parquet, "verify", counted)
    warehouse.build(isolated_env)
    assert read == []  # the run's build checked both files: nothing changed since
    tables = ParquetTables(isolated_env)
    tables.write("account_summary", today, tables.read("account_summary", today))
    warehouse.build(isolated_env)
    assert read == [str(tables.path("account_summary", today))]
    (isolated_env / warehouse.FILE_NAME).unlink()
    read.clear()
    warehouse.build(isolated_env)  # no earlier build to trust: every file
    assert sorted(read) == sorted(
        str(tables.path(t, today)) for t in ("asset_categories", "account_summary")
    )


def test_a_changed_byte_in_a_page_is_found_by_its_checksum(isolated_env: Path) -> None:
    today = today_in_seoul()
    run(today)
    path = ParquetTables(isolated_env).path("account_summary", today)
    column = pq.ParquetFile(path).metadata.row_group(0).column(5)
    data = bytearray(path.read_bytes())
    end = column.data_page_offset + column.total_compressed_size
    data[end - 3] ^= 0x01  # inside the page's compressed bytes, which still decode
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="CRC") as raised:
        parquet.verify(path)
    assert str(path) in str(raised.value)


# -- failure 2: a compacted month, or a daily file of a closed month, cut short -----------------


@pytest.mark.parametrize("which", ["compacted month", "daily file of the month"])
def test_a_cut_short_closed_month_is_compacted_again_by_the_next_run(
    isolated_env: Path, which: str
) -> None:
    days, today = with_a_closed_month()
    month = CompactedMonths(isolated_env)
    compacted = month.path("asset_categories", days[0].replace(day=1))
    damaged = (
        compacted
        if which == "compacted month"
        else (ParquetTables(isolated_env).path("asset_categories", days[1]))
    )
    cut(damaged)

    result = run(today)
    assert f"{damaged} was damaged" in notes(result)
    parquet.verify(damaged)
    parquet.verify(compacted)
    files = CompactedMonths(isolated_env).files("asset_categories")
    assert compacted in files.compacted  # read by the views again
    assert_every_view_answers(isolated_env)
    assert_all_served([*days, today])


# -- failure 3: a raw answer cut short ----------------------------------------------------------


def test_a_cut_short_raw_answer_is_withheld_and_its_rows_kept_on_a_rebuild(
    isolated_env: Path,
) -> None:
    today = today_in_seoul()
    day = today - timedelta(days=1)
    run(day)
    run(today)
    [answer] = RawLanding(isolated_env).answers_by_account(day)[ACCOUNTS[0].id]
    before = answer.stat().st_size
    cut(answer)

    result = materialize(day)  # rebuild the day: the answer is withheld, by file and account
    assert not result.success
    description, metadata = failure(result)
    assert ACCOUNTS[0].id in description and str(answer) in description
    assert "keeps the rows it had" in metadata["withheld_accounts"][ACCOUNTS[0].id]
    assert answer.stat().st_size == before // 2  # never rewritten
    assert_all_served([day, today])


def test_a_damaged_answer_on_a_damaged_day_keeps_what_can_still_be_read(
    isolated_env: Path,
) -> None:
    today = today_in_seoul()
    run(today)
    [answer] = RawLanding(isolated_env).answers_by_account(today)[ACCOUNTS[0].id]
    tables = ParquetTables(isolated_env)
    cut(answer)
    cut(tables.path("asset_categories", today))

    result = build_days(isolated_env, [today])
    withheld = result.withheld[f"{today} {ACCOUNTS[0].id}"]
    assert str(answer) in withheld
    assert "keeps its account_summary rows" in withheld
    assert "its asset_categories rows could not be read: lost" in withheld
    assert tables.read("account_summary", today)["account_id"].to_pylist() == [
        a.id for a in ACCOUNTS
    ]
    assert set(tables.read("asset_categories", today)["account_id"].to_pylist()) == {ACCOUNTS[1].id}


@pytest.fixture
def real_mode(monkeypatch: pytest.MonkeyPatch, simulator: Simulator) -> Simulator:
    monkeypatch.setenv("KIS_ENV", "real")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_APP_KEY", "HEAL-KEY")
    monkeypatch.setenv("KIS_APP_SECRET", "HEAL-SECRET")
    monkeypatch.setenv("KIS_ACCOUNTS", ",".join(a.id for a in ACCOUNTS))
    return simulator


def test_a_capture_whose_fetch_fails_after_its_answer_was_damaged_keeps_the_rows(
    isolated_env: Path, real_mode: Simulator
) -> None:
    today = today_in_seoul()
    run(today)
    [answer] = RawLanding(isolated_env).answers_by_account(today)[ACCOUNTS[1].id]
    cut(answer)
    real_mode.faults = FaultPlan.parse(f"{ACCOUNTS[1].id}:business_error")

    result = materialize(today)
    assert not result.success
    _, metadata = failure(result)
    assert "OPSQ2002" in str(metadata["failed_accounts"][ACCOUNTS[1].id])
    [tables] = [
        m.metadata["withheld_accounts"].value
        for m in result.asset_materializations_for_node("balance_tables")
        if m.asset_key == dg.AssetKey("asset_categories")
    ]
    withheld = tables[f"{today} {ACCOUNTS[1].id}"]
    assert str(answer) in withheld and "keeps the rows it had" in withheld
    assert_all_served([today])


# -- make verify and make repair ----------------------------------------------------------------


def command(module: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"pipelines.commands.{module}"],
        cwd=REPO,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_verify_names_one_damaged_file_of_each_kind_and_repair_rebuilds_the_derived_ones(
    isolated_env: Path,
) -> None:
    days, today = with_a_closed_month()
    assert command("verify").returncode == 0
    raw = RawLanding(isolated_env).answers_by_account(days[0])[ACCOUNTS[0].id][0]
    daily = ParquetTables(isolated_env).path("account_summary", today)
    compacted = CompactedMonths(isolated_env).path("asset_categories", days[0].replace(day=1))
    for path in (raw, daily, compacted):
        cut(path)
    removed = ParquetTables(isolated_env).path("account_summary", days[1])
    removed.unlink()

    verified = command("verify")
    assert verified.returncode == 1, verified.stderr
    found = verified.stdout
    assert "RAW ANSWER damaged" in found and str(raw) in found
    assert f"account {ACCOUNTS[0].id} on {days[0]}" in found
    assert "DAILY FILE damaged (Parquet magic bytes not found in footer" in found
    assert str(daily) in found and "views account_summary, net_asset_history" in found
    assert "COMPACTED MONTH damaged" in found and str(compacted) in found
    assert "views " + ", ".join(CATEGORY_VIEWS) in found
    assert f"DAILY FILE missing: {removed}" in found

    raw_bytes = raw.read_bytes()
    repaired = command("repair")
    assert repaired.returncode == 0, repaired.stderr + repaired.stdout
    assert f"repaired: {daily} was damaged" in repaired.stdout
    assert f"repaired: {compacted} was damaged" in repaired.stdout
    assert f"repaired: {removed} was missing: rebuilt from the raw answers of {days[1]}" in (
        repaired.stdout
    )
    assert_every_view_answers(isolated_env)
    assert_all_served([*days, today])

    after = command("verify")
    assert after.returncode == 0, after.stdout  # the raw answer repair dealt with is a note
    assert "damaged (" not in after.stdout
    assert "1 damaged raw answers are known" in after.stdout
    assert raw.read_bytes() == raw_bytes  # never rewritten or removed

    cut(raw)  # damaged again, otherwise: no longer the answer repair dealt with
    again = command("verify")
    assert again.returncode == 2 and str(raw) in again.stdout, again.stdout


def test_on_an_s3_root_a_run_heals_derived_files_and_verify_and_repair_name_every_one(
    s3_root: str,
) -> None:
    days, today = with_a_closed_month()
    settings = Settings.from_env()
    storage = open_root(settings.data_root)

    def cut_object(key: str) -> str:
        """An object replaced by its first half (what a cut-off copy leaves in a bucket)."""
        data = storage.read_bytes(key)
        storage.write_bytes(key, data[: len(data) // 2])
        return str(storage.location(key))

    tables, months = ParquetTables(storage), CompactedMonths(storage)
    month = days[0].replace(day=1)
    daily = cut_object(tables.key("asset_categories", today))
    compacted = cut_object(months.key("account_summary", month))
    result = run(today)  # the next run heals both, and says so
    assert f"{daily} was damaged" in notes(result) and f"{compacted} was damaged" in notes(result)
    assert_all_served([*days, today])

    [raw] = RawLanding(storage).answers_by_account(days[1])[ACCOUNTS[1].id]
    raw_url = cut_object(str(raw.key))
    daily = cut_object(tables.key("account_summary", days[0]))
    compacted = cut_object(months.key("asset_categories", month))
    verified = command("verify")
    assert verified.returncode == 1, verified.stderr
    for url in (raw_url, daily, compacted):
        assert url.startswith("s3://") and url in verified.stdout
    repaired = command("repair")
    assert repaired.returncode == 0, repaired.stderr + repaired.stdout
    after = command("verify")
    assert after.returncode == 0 and "damaged (" not in after.stdout, after.stdout
    assert "1 damaged raw answers are known" in after.stdout
    assert_all_served([*days, today])


def test_the_repair_history_job_rebuilds_and_records_the_damaged_raw_answer(
    isolated_env: Path,
) -> None:
    from pipelines.definitions import defs

    today = today_in_seoul()
    yesterday = today - timedelta(days=1)
    run(yesterday)
    run(today)
    daily = ParquetTables(isolated_env).path("asset_categories", today)
    [raw] = RawLanding(isolated_env).answers_by_account(yesterday)[ACCOUNTS[0].id]
    cut(daily)
    cut(raw)
    raw_bytes = raw.read_bytes()

    job = defs.resolve_job_def("repair_history")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert [text for text in metadata["repaired"] if str(daily) in text]
    assert [text for text in metadata["damaged_raw_answers"] if str(raw) in text]
    assert metadata["still_damaged"] == []
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING and "kept as it is" in entry.user_message
    ]
    assert len(warnings) == 1 and str(raw) in warnings[0]
    assert raw.read_bytes() == raw_bytes
    parquet.verify(daily)
    assert_all_served([yesterday, today])
