"""The tables and views as pandas DataFrames: through Dagster (the tables' IO manager, the
`duckdb` resource, assets of a user's own, examples/my_assets.py) and in a notebook (`frames`).

Days are materialized through Dagster against the embedded simulator, with an account whose
amounts have 19 digits: a float anywhere on the way would not compare equal.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster_duckdb import DuckDBResource
from duckdb import Error as DuckDBError

from assets import io_managers
from assets.balance import balance_tables, warehouse_views
from assets.partitions import daily_partitions
from pipelines import frames
from pipelines.definitions import defs, resources
from pipelines.ingest.fetch import today_in_seoul
from pipelines.lake import schema
from pipelines.lake.tables import ParquetTables
from tests.runs import failure_text, materialize

REPO = Path(__file__).resolve().parents[1]
ACCOUNTS = "12345678-01,12345678-21,98765432-01"
AMOUNT = pd.ArrowDtype(pa.decimal128(38, 8))


def previous_weekday(day: date) -> date:
    day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


@pytest.fixture
def days(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> list[date]:
    """The previous weekday and today, materialized through Dagster."""
    monkeypatch.setenv("KIS_ACCOUNTS", ACCOUNTS)
    today = today_in_seoul()
    history = [previous_weekday(today), today]
    for day in history:
        result = materialize(day)
        assert result.success, failure_text(result)
    return history


def parquet_file(data_root: Path, table: str, day: date) -> pa.Table:
    return pq.ParquetFile(ParquetTables(data_root).path(table, day)).read()


def assert_is_the_file(frame: pd.DataFrame, data_root: Path, table: str, day: date) -> None:
    """`frame` is the day's Parquet file exactly, with `snapshot_date` (the day) in front."""
    on_disk = parquet_file(data_root, table, day)
    looked_up = ["asset_class"] if table == "asset_categories" else []  # as in the view
    assert list(frame.columns) == [schema.PARTITION_COLUMN, *on_disk.column_names, *looked_up]
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        view = con.execute(f"FROM {table} WHERE snapshot_date = ?", [day]).to_arrow_table()
    assert list(frame.columns) == view.column_names  # the view's columns, in its order
    if looked_up:
        key = ["account_id", "category_seq"]
        assert (
            frame.sort_values(key)["asset_class"].tolist()
            == view.sort_by([(k, "ascending") for k in key])["asset_class"].to_pylist()
        )
    assert frame[schema.PARTITION_COLUMN].dtype == pd.ArrowDtype(pa.date32())
    assert frame[schema.PARTITION_COLUMN].tolist() == [day] * on_disk.num_rows
    amounts = [f.name for f in schema.TABLES[table] if f.type == schema.AMOUNT]
    assert amounts and all(frame[name].dtype == AMOUNT for name in amounts)
    assert not [name for name, dtype in frame.dtypes.items() if "float" in str(dtype)]
    for name in amounts:
        assert frame[name].tolist() == on_disk.column(name).to_pylist(), name
    assert any(
        value is not None and len(str(int(value))) >= 19
        for name in amounts
        for value in frame[name].tolist()
    )
    # every column, not only the amounts, round-trips to the file's Arrow table
    back = pa.Table.from_pandas(
        frame.drop(columns=[schema.PARTITION_COLUMN, *looked_up]), preserve_index=False
    )
    assert back.cast(on_disk.schema).equals(on_disk)


def test_both_tables_load_through_dagster_as_dataframes_of_the_exact_files(
    isolated_env: Path, days: list[date]
) -> None:
    for day in days:
        for table in schema.TABLES:
            frame = defs.load_asset_value(table, partition_key=day.isoformat())
            assert isinstance(frame, pd.DataFrame)
            assert_is_the_file(frame, isolated_env, table, day)


def test_an_asset_of_yours_gets_the_partitions_rows_and_a_range_as_a_dict(
    isolated_env: Path, days: list[date]
) -> None:
    seen: dict[str, Any] = {}

    @dg.asset(partitions_def=daily_partitions)
    def rebalance(asset_categories: pd.DataFrame) -> None:
        seen["one"] = asset_categories

    @dg.asset(
        partitions_def=daily_partitions,
        ins={
            "account_summary": dg.AssetIn(
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-3),
                metadata={"allow_missing_partitions": True},
            )
        },
    )
    def last_days(account_summary: dict[str, pd.DataFrame]) -> None:
        seen["range"] = account_summary

    @dg.asset(
        partitions_def=daily_partitions,
        ins={
            "account_summary": dg.AssetIn(
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-3)
            )
        },
    )
    def strict_days(account_summary: dict[str, pd.DataFrame]) -> None:
        raise AssertionError("a missing day must fail the load")

    today = days[-1]
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [balance_tables, rebalance, last_days],
        selection=[rebalance.key, last_days.key],
        partition_key=today.isoformat(),
        resources=resources(),
        instance=instance,
    )
    assert result.success
    assert_is_the_file(seen["one"], isolated_env, "asset_categories", today)
    # four days asked for, two of them materialized: a dict keyed by partition, in order
    assert list(seen["range"]) == [d.isoformat() for d in days]
    for key, frame in seen["range"].items():
        assert_is_the_file(frame, isolated_env, "account_summary", date.fromisoformat(key))

    failed = dg.materialize(
        [balance_tables, strict_days],
        selection=[strict_days.key],
        partition_key=today.isoformat(),
        resources=resources(),
        instance=instance,
        raise_on_error=False,
    )
    assert not failed.success
    [event] = failed.get_step_failure_events()
    error = event.step_failure_data.error
    assert error is not None and error.cause is not None
    asked = [today - timedelta(days=n) for n in range(3, -1, -1)]
    missing = next(day for day in asked if day not in days)  # the first one fails the load
    assert f"account_summary has no file for {missing}" in error.cause.message


def test_a_day_never_materialized_fails_to_load_naming_table_and_day(isolated_env: Path) -> None:
    with pytest.raises(frames.MissingDayError, match="asset_categories has no file for 2026-11-20"):
        defs.load_asset_value("asset_categories", partition_key="2026-11-20")


def test_a_damaged_day_fails_to_load_naming_its_file(isolated_env: Path) -> None:
    today = today_in_seoul()
    assert materialize(today).success
    path = ParquetTables(isolated_env).path("account_summary", today)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(frames.DamagedFileError, match="make repair") as raised:
        defs.load_asset_value("account_summary", partition_key=today.isoformat())
    assert raised.value.path == path and "magic bytes" in raised.value.reason


def test_the_io_manager_only_loads(isolated_env: Path) -> None:
    manager = io_managers.ParquetTablesIOManager(data_root=str(isolated_env))
    context = dg.build_output_context(asset_key=dg.AssetKey("asset_categories"))
    manager.handle_output(context, None)  # what an asset that writes its own files returns
    assert not isolated_env.exists()
    with pytest.raises(TypeError, match="written by the balance_tables asset itself"):
        manager.handle_output(context, pd.DataFrame({"a": [1]}))


def example_assets() -> dict[str, Any]:
    """examples/my_assets.py, the assets of your own that the docs show, run as it is written."""
    path = REPO / "examples" / "my_assets.py"
    namespace: dict[str, Any] = {"__name__": "my_assets"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True), namespace)
    return namespace


def test_the_example_assets_run_on_the_tables_and_the_views(
    isolated_env: Path, days: list[date]
) -> None:
    mine = example_assets()
    by_account, net_assets = mine["market_value_by_account"], mine["net_assets_to_date"]
    today = days[-1]
    result = dg.materialize(
        [balance_tables, warehouse_views, by_account, net_assets],
        selection=[by_account.key, net_assets.key],
        partition_key=today.isoformat(),
        resources=resources(),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success

    # pandas on the partition's rows: sums of the file's exact decimals
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        classes = dict(
            con.execute(
                "SELECT layout || category_seq, asset_class FROM asset_categories "
                "WHERE snapshot_date = ?",
                [today],
            ).fetchall()
        )
    expected: dict[tuple[str, str], Decimal] = {}
    for row in parquet_file(isolated_env, "asset_categories", today).to_pylist():
        if not row["is_total"]:
            key = (row["account_id"], classes[f"{row['layout']}{row['category_seq']}"])
            expected[key] = expected.get(key, 0) + row["evlu_amt"]
    summed = result.output_for_node("market_value_by_account")
    assert summed["evlu_amt"].dtype.pyarrow_dtype.scale == 8  # still an exact decimal
    pairs = zip(summed["account_id"], summed["asset_class"], strict=True)
    assert dict(zip(pairs, summed["evlu_amt"], strict=True)) == expected
    assert len({account for account, _ in expected}) == 3 and len(expected) > 6

    # SQL through the duckdb resource: the view's rows up to the day, exact
    history = result.output_for_node("net_assets_to_date")
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT snapshot_date, account_id, net_assets FROM net_asset_history ORDER BY ALL"
        ).fetchall()
    assert list(history.itertuples(index=False, name=None)) == rows
    assert len(rows) == 3 * len(days)
    assert history["net_assets"].dtype == AMOUNT


def test_the_duckdb_resource_opens_the_warehouse_read_only(
    isolated_env: Path, days: list[date]
) -> None:
    attempts: list[str] = []

    @dg.asset
    def tries_to_write(duckdb: DuckDBResource) -> None:
        with duckdb.get_connection() as con:
            assert con.execute("SELECT count(*) FROM account_summary").fetchone() == (6,)
            try:
                con.execute("CREATE TABLE mine AS SELECT 1 AS a")
            except DuckDBError as error:
                attempts.append(str(error))

    result = dg.materialize([tries_to_write], resources=resources())
    assert result.success
    [refused] = attempts
    assert "read-only" in refused


def test_a_notebook_gets_views_and_days_as_dataframes(isolated_env: Path, days: list[date]) -> None:
    history = frames.table("net_asset_history")
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        expected = con.execute("FROM net_asset_history").fetchall()
        names = [c[0] for c in con.execute("DESCRIBE net_asset_history").fetchall()]
    assert list(history.columns) == names
    by_day_and_account = itemgetter(0, 1)  # a view's rows come in no particular order
    assert sorted(
        (
            tuple(None if v is pd.NA else v for v in row)
            for row in history.itertuples(index=False, name=None)
        ),
        key=by_day_and_account,
    ) == sorted(expected, key=by_day_and_account)
    assert history["net_assets"].dtype == AMOUNT
    assert history["snapshot_date"].dtype == pd.ArrowDtype(pa.date32())

    one_day = frames.query(
        "SELECT account_id, net_assets FROM net_asset_history WHERE snapshot_date = ? "
        "ORDER BY account_id",
        [days[-1]],
    )
    assert len(one_day) == 3 and one_day["net_assets"].dtype == AMOUNT
    # net assets as KIS means them: each account's 합계 row, not the securities-only field
    totals = frames.query(
        "SELECT account_id, real_nass_amt FROM asset_categories "
        "WHERE is_total AND snapshot_date = ? ORDER BY account_id",
        [days[-1]],
    )
    assert one_day["net_assets"].tolist() == totals["real_nass_amt"].tolist()
    # and as of a date, through a table macro with a bound parameter
    as_of = frames.query("FROM net_assets_as_of(?) ORDER BY account_id", [days[-1]])
    assert as_of["net_assets"].tolist() == one_day["net_assets"].tolist()
    assert as_of["net_assets"].dtype == AMOUNT and set(as_of["days_old"]) == {0}

    assert_is_the_file(
        frames.day("asset_categories", days[-1].isoformat()),
        isolated_env,
        "asset_categories",
        days[-1],
    )
    with pytest.raises(ValueError, match=r"no view or table 'nope'.*net_asset_history"):
        frames.table("nope")
    with pytest.raises(FileNotFoundError, match="no warehouse at"):
        frames.table("net_asset_history", data_root=isolated_env / "elsewhere")
