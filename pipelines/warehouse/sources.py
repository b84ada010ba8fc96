"""What the views read, as SQL: the lake's Parquet files of a data root (compacted months, else
by day), every path rendered in one place so that a copied root or object storage reads the same.
"""

from __future__ import annotations

from pathlib import PurePath

import duckdb
import pyarrow as pa

from pipelines.lake import account_totals, schema
from pipelines.lake.compaction import TableFiles
from pipelines.lake.tables import ParquetTables
from pipelines.storage.roots import DataRoot, LocalStorage, Storage, open_root


def duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    return {pa.string(): "VARCHAR", pa.int16(): "SMALLINT", pa.bool_(): "BOOLEAN"}[arrow_type]


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- where the views read: every path of the data root rendered in one place ------------------

#: The DuckDB variable `attach` sets to the local data root a connection reads (the one the
#: warehouse is opened with); unset, as in a plain `duckdb` shell, the views read the root the
#: warehouse was built in.
ROOT_VARIABLE = "kis_data_root"
#: The macro that makes a key of a local data root a path: the root (ROOT_VARIABLE, else the
#: root at build time), '/', the key.
ROOT_MACRO = "data_root_file"


def root_macro_sql(storage: Storage) -> str:
    built = quote(str(storage.root))
    return (
        f"CREATE MACRO {ROOT_MACRO}(key) AS "
        f"coalesce(getvariable('{ROOT_VARIABLE}'), {built}) || '/' || key;"
        f"COMMENT ON MACRO {ROOT_MACRO} IS "
        + quote(
            f"A file of the data root as the views read it: under the variable {ROOT_VARIABLE} "
            f"(SET VARIABLE {ROOT_VARIABLE} = '/a/copy/of/the/root'), else under {storage.root}, "
            "where the warehouse was built"
        )
    )


def path_sql(storage: Storage, path: str) -> str:
    """A file or glob of the data root (as `Storage.duckdb_path` gives it) as SQL: under a
    local root, relative to the root the warehouse is read with; an s3:// URL as it is."""
    if isinstance(storage, LocalStorage):
        key = PurePath(path).relative_to(storage.root).as_posix()
        return f"{ROOT_MACRO}({quote(key)})"
    return quote(path)


def root_statement(data_root: DataRoot | Storage) -> str | None:
    """The statement that points a connection's views at `data_root` (None for object storage,
    whose views hold their s3:// URLs): what `attach` runs, and `make sql` gives the shell."""
    storage = open_root(data_root).absolute()
    if not isinstance(storage, LocalStorage):
        return None
    return f"SET VARIABLE {ROOT_VARIABLE} = {quote(str(storage.root))}"


def attach(con: duckdb.DuckDBPyConnection, data_root: DataRoot | Storage) -> None:
    """Let `con` read the views of a warehouse over `data_root`: its files (object storage: the
    store registered) and, for a local root, the views pointed at it."""
    open_root(data_root).attach(con)
    statement = root_statement(data_root)
    if statement:
        con.execute(statement)


def list_sql(storage: Storage, paths: list[str]) -> str:
    return "[" + ", ".join(path_sql(storage, path) for path in paths) + "]"


def parquet_sql(name: str, files: TableFiles, tables: ParquetTables, columns: str) -> str:
    """Compacted months from their one file each, the other months from their daily files."""
    parts = []
    storage = tables.storage
    if files.compacted:
        parts.append(
            f"SELECT {columns} FROM read_parquet("
            f"{list_sql(storage, [str(p) for p in files.compacted])}, hive_partitioning = false)"
        )
    if files.daily_months:
        globs = [tables.month_glob(name, month) for month in files.daily_months]
        parts.append(
            f"SELECT {columns} FROM read_parquet({list_sql(storage, globs)}, "
            f"hive_partitioning = true, hive_types = {{'{schema.PARTITION_COLUMN}': DATE}})"
        )
    if not parts:  # no day written yet: an empty view of the right shape
        typed = ", ".join(
            [f"NULL::DATE AS {schema.PARTITION_COLUMN}"]
            + [f"NULL::{duckdb_type(f.type)} AS {f.name}" for f in schema.TABLES[name]]
        )
        return f"SELECT {typed} WHERE false"
    return " UNION ALL ".join(parts)


def table_view_sql(name: str, files: TableFiles, tables: ParquetTables) -> str:
    table_schema = schema.TABLES[name]
    columns = ", ".join([schema.PARTITION_COLUMN, *table_schema.names])
    if name == "asset_categories":  # the roll-up is looked up, so it can change without a rewrite
        return (
            f"SELECT t.*, l.asset_class FROM ({parquet_sql(name, files, tables, columns)}) t "
            "LEFT JOIN category_labels l USING (layout, category_seq)"
        )
    return parquet_sql(name, files, tables, columns)


def account_days_sql(files: TableFiles, categories: TableFiles, tables: ParquetTables) -> str:
    """account_summary's rows (`files`) with their totals from output1 (account_totals.COLUMNS):
    as compacted months store them, and for the months read by day, from the same months' daily
    asset_categories files (the source of any compacted month; `categories` says which months
    have any)."""
    summary = ", ".join([schema.PARTITION_COLUMN, *schema.ACCOUNT_SUMMARY.names])
    totals = ", ".join(account_totals.COLUMNS.names)
    parts = []
    if files.compacted:
        stored = TableFiles(files.compacted, [])
        parts.append(parquet_sql("account_summary", stored, tables, f"{summary}, {totals}"))
    if files.daily_months:
        by_day = TableFiles([], files.daily_months)
        with_output1 = {*categories.compacted_months, *categories.daily_months}
        output1_days = TableFiles([], [m for m in files.daily_months if m in with_output1])
        columns = ", ".join([schema.PARTITION_COLUMN, *schema.ASSET_CATEGORIES.names])
        output1 = f"({parquet_sql('asset_categories', output1_days, tables, columns)})"
        parts.append(
            f"SELECT s.*, {', '.join(f't.{name}' for name in account_totals.COLUMNS.names)} "
            f"FROM ({parquet_sql('account_summary', by_day, tables, summary)}) s "
            f"LEFT JOIN ({account_totals.sql(output1)}) t USING (snapshot_date, account_id)"
        )
    if not parts:  # no day written yet: an empty source of the right shape
        empty = parquet_sql("account_summary", files, tables, summary)
        typed = ", ".join(
            f"NULL::{duckdb_type(f.type)} AS {f.name}" for f in account_totals.COLUMNS
        )
        return f"SELECT *, {typed} FROM ({empty})"
    return " UNION ALL ".join(parts)
