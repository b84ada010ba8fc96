"""The tables and views as pandas DataFrames, for notebooks and for the tables' IO manager.

Every column is Arrow-backed (`pd.ArrowDtype`): amounts stay exact `decimal128(38, 8)`, never
float, `snapshot_date` is a date and a missing value stays missing. In a notebook:

    from pipelines import frames
    frames.table("net_asset_history")                 # any view of the warehouse
    frames.query("SELECT * FROM latest_allocation WHERE NOT is_total")
    frames.query("FROM net_assets_as_of(?)", ["2026-03-31"])   # a table macro, as of a date
    frames.day("asset_categories", "2026-11-26")      # one day's Parquet file
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines.errors import MissingDayError
from pipelines.kis import layouts
from pipelines.lake import parquet, schema
from pipelines.lake.tables import ParquetTables
from pipelines.settings import Settings
from pipelines.storage.damage import DamagedFileError
from pipelines.storage.roots import DataRoot
from pipelines.warehouse import warehouse

#: The dtype of every amount in a DataFrame: exact, as in the Parquet files and the views.
AMOUNT = pd.ArrowDtype(schema.AMOUNT)
#: The dtype of `snapshot_date`: values are `datetime.date`.
DATE = pd.ArrowDtype(pa.date32())


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """A DataFrame whose every column keeps its Arrow type (decimals stay decimals)."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _as_date(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)


def _settings(data_root: Path | str | None) -> Settings:
    """KIS_DATA_ROOT (and KIS_WAREHOUSE), or the data root given (with its default warehouse;
    a relative one is relative to the repository, as KIS_DATA_ROOT is)."""
    if data_root is None:
        return Settings.from_env()
    return Settings.from_env({**os.environ, "KIS_DATA_ROOT": str(data_root), "KIS_WAREHOUSE": ""})


def read_day(data_root: DataRoot, table: str, day: date) -> pd.DataFrame:
    """One day of `table` from its Parquet file, `snapshot_date` first (from the partition);
    asset_categories ends with `asset_class`, as in the view of that name.

    MissingDayError if the day has no file; DamagedFileError (naming the file) if it cannot be
    read: the next run, or `make repair`, rebuilds it from the day's raw answers."""
    if table not in schema.TABLES:
        raise ValueError(f"no table {table!r}: the tables are {', '.join(schema.TABLES)}")
    path = ParquetTables(data_root).path(table, day)
    try:
        data = parquet.read_table(path)
    except DamagedFileError as error:
        raise DamagedFileError(
            error.path, f"{error.reason} (the next run, or `make repair`, rebuilds it from raw)"
        ) from error
    except FileNotFoundError:
        raise MissingDayError(
            f"{table} has no file for {day} ({path}): the day was not materialized or had no "
            "snapshot"
        ) from None
    dates = pa.array([day] * data.num_rows, pa.date32())
    data = data.add_column(0, schema.PARTITION_COLUMN, dates)
    return from_arrow(_with_asset_class(data) if table == "asset_categories" else data)


def _with_asset_class(data: pa.Table) -> pa.Table:
    """asset_categories with the view's last column, asset_class: the roll-up of its row in
    its layout (pipelines/kis/layouts.py), looked up as the warehouse looks it up."""
    classes = {(name, seq): c.asset_class for name, seq, c in layouts.labelled_rows()}
    rows = zip(data["layout"].to_pylist(), data["category_seq"].to_pylist(), strict=True)
    values = pa.array([classes.get(row) for row in rows], pa.string())
    return data.append_column("asset_class", values)


def day(
    table: str, snapshot_date: date | str, *, data_root: Path | str | None = None
) -> pd.DataFrame:
    """One day of `asset_categories` or `account_summary` (data root: KIS_DATA_ROOT)."""
    return read_day(_settings(data_root).data_root, table, _as_date(snapshot_date))


@contextmanager
def connect(data_root: Path | str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the warehouse (KIS_WAREHOUSE of KIS_DATA_ROOT, else data/),
    able to read the data root's files (also in object storage)."""
    settings = _settings(data_root)
    if not settings.warehouse.is_file():
        raise FileNotFoundError(
            f"no warehouse at {settings.warehouse}: run `make demo` or materialize a day"
        )
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        yield con


def query(
    sql: str, parameters: object = None, *, data_root: Path | str | None = None
) -> pd.DataFrame:
    """The result of a query on the warehouse's views, with `?` or `$name` parameters."""
    with connect(data_root) as con:
        return from_arrow(con.execute(sql, parameters).to_arrow_table())


def table(name: str, *, data_root: Path | str | None = None) -> pd.DataFrame:
    """A whole view (or lookup table) of the warehouse, e.g. `net_asset_history`."""
    with connect(data_root) as con:
        names = [
            row[0]
            for row in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal "
                "UNION ALL SELECT table_name FROM duckdb_tables() ORDER BY 1"
            ).fetchall()
        ]
        if name not in names:
            raise ValueError(f"no view or table {name!r} in the warehouse: {', '.join(names)}")
        return from_arrow(con.table(name).to_arrow_table())
